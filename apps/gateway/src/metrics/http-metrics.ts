import type { NextFunction, Request, Response } from 'express';
import type { GatewayMetrics } from './gateway-metrics.js';

/** Observes every request's latency by matched route (not raw path: ids would explode labels). */
export function httpMetrics(metrics: GatewayMetrics) {
  return (request: Request, response: Response, next: NextFunction): void => {
    const started = performance.now();
    response.on('close', () => {
      const route = (request.route as { path?: string } | undefined)?.path;
      metrics.httpDuration.observe(
        {
          method: request.method,
          route: route === undefined ? 'unmatched' : `${request.baseUrl}${route}`,
          status: String(response.statusCode),
        },
        (performance.now() - started) / 1000,
      );
    });
    next();
  };
}
