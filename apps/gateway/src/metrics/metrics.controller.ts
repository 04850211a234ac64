import { Controller, Get, Res } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { MetricsExposition, type GatewayMetrics } from './gateway-metrics.js';

@Controller('metrics')
export class MetricsController {
  constructor(private readonly exposition: MetricsExposition) {}

  /** Prometheus text format; like the health routes, open without a key. */
  @Get()
  async scrape(@Res() response: Response): Promise<void> {
    response.setHeader('Content-Type', this.exposition.contentType);
    response.send(await this.exposition.scrape());
  }
}

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
