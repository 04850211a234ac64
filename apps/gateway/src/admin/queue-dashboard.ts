import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import type { NextFunction, Request, Response, Router } from 'express';

export const DASHBOARD_PATH = '/admin/queues';

/**
 * The BullMQ dashboard (bull-board) for operators. Model queues appear as gateways use them, so
 * the dashboard's list is brought up to date on each visit.
 */
export function queueDashboard(queues: () => Iterable<Queue>): {
  sync: (request: Request, response: Response, next: NextFunction) => void;
  router: Router;
} {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(DASHBOARD_PATH);
  const board = createBullBoard({ queues: [], serverAdapter });
  const shown = new Set<string>();
  const sync = (_request: Request, _response: Response, next: NextFunction): void => {
    for (const queue of queues()) {
      if (shown.has(queue.name)) continue;
      shown.add(queue.name);
      board.addQueue(new BullMQAdapter(queue));
    }
    next();
  };
  return { sync, router: serverAdapter.getRouter() as Router };
}
