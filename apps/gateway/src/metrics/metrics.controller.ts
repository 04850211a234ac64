import { Controller, Get, Res } from '@nestjs/common';
import type { Response } from 'express';
import { MetricsExposition } from './gateway-metrics.js';

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
