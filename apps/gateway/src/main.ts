import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import swaggerUi from 'swagger-ui-express';
import { gatewayEnvSchema, loadConfig } from '#config';
import { createLogger } from '#cluster';
import { bootOrExit, ReadyMessage } from '#processes';
import { CLUSTER_PATH } from './admin/cluster-report.js';
import { DASHBOARD_PATH, queueDashboard } from './admin/queue-dashboard.js';
import { AppModule } from './app.module.js';
import { ApiKeys } from './auth/api-keys.js';
import { authMiddleware } from './auth/auth.middleware.js';
import { BatchesService } from './batches/batches.service.js';
import { jsonBody } from './common/json-body.js';
import { NestPinoLogger } from './common/nest-logger.js';
import { serveConsole } from './console/console-assets.js';
import { requestLogging } from './common/request-logging.js';
import { OpenApiDocument } from './docs/openapi.js';
import { JobQueues } from './jobs/job-queues.js';
import { GatewayMetrics } from './metrics/gateway-metrics.js';
import { httpMetrics } from './metrics/http-metrics.js';

bootOrExit(async () => {
  const env = loadConfig(gatewayEnvSchema);
  const logger = createLogger('gateway', env.LOG_LEVEL, env.LOG_FORMAT);
  // Checked before anything connects, so a bad key setup fails the boot with its own message.
  const apiKeys = ApiKeys.fromEnv(env);
  if (apiKeys.disabled) {
    logger.warn({ host: env.HOST }, 'AUTH_DISABLED=true: every route is open, as tenant "local"');
  } else if (apiKeys.count === 0) {
    logger.warn(
      'no API keys configured (API_KEYS, ADMIN_API_KEYS, API_KEYS_FILE): /v1 answers 401',
    );
  }

  // Building the container connects to Redis: an unreachable Redis fails the boot here.
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot({ env, logger, apiKeys }),
    // Nest types its options as a class; a plain object is what its own docs pass.
    // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
    { logger: new NestPinoLogger(logger), abortOnError: false, bodyParser: false },
  );
  // The HTTP pipeline before the routes, in order: every request is logged and timed; the web
  // console's files are served (no key: it asks for one); /v1 and the admin routes need a key;
  // JSON bodies are parsed; the docs are served beside the routes.
  app.use(requestLogging(logger));
  app.use(httpMetrics(app.get(GatewayMetrics)));
  serveConsole(app);
  app.use('/v1', authMiddleware(apiKeys, 'api'));
  app.use(CLUSTER_PATH, authMiddleware(apiKeys, 'admin'));
  const jobs = app.get(JobQueues);
  const batches = app.get(BatchesService);
  const dashboard = queueDashboard(() => [...jobs.known().values(), batches.queue]);
  app.use(DASHBOARD_PATH, authMiddleware(apiKeys, 'admin'), dashboard.sync, dashboard.router);
  app.use(jsonBody(env.MAX_BODY_BYTES));
  const openApi = app.get(OpenApiDocument).spec;
  app.use('/docs/openapi.json', (_request: unknown, response: { json(body: unknown): void }) => {
    response.json(openApi);
  });
  app.use('/docs', swaggerUi.serve, swaggerUi.setup(openApi));
  // Closes the queues, the batch worker and the Redis connections once the server has drained.
  app.enableShutdownHooks();
  await app.listen(env.PORT, env.HOST);

  const address = app.getHttpServer().address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  logger.info({ url, port: address.port }, ReadyMessage.Gateway);
});
