import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import swaggerUi from 'swagger-ui-express';
import { gatewayEnvSchema, loadConfig } from '#config';
import { bootOrExit, connectRedisOrFail, createLogger, createRedis, ReadyMessage } from '#cluster';
import { DASHBOARD_PATH, queueDashboard } from './admin/queue-dashboard.js';
import { CONTROLLERS, AppModule } from './app.module.js';
import { ApiKeys } from './auth/api-keys.js';
import { authMiddleware } from './auth/auth.middleware.js';
import { OpenAiExceptionFilter } from './common/exception-filter.js';
import { jsonBody } from './common/json-body.js';
import { NestPinoLogger } from './common/nest-logger.js';
import { requestLogging } from './common/request-logging.js';
import { buildOpenApi } from './docs/openapi.js';
import { httpMetrics } from './metrics/metrics.controller.js';
import { createServices } from './services.js';

/** The version `/docs` shows. */
const API_VERSION = '0.1.0';

bootOrExit(async () => {
  const env = loadConfig(gatewayEnvSchema);
  const logger = createLogger('gateway', env.LOG_LEVEL);
  // Checked before anything connects, so a bad key setup fails the boot with its own message.
  const apiKeys = ApiKeys.fromEnv(env);
  const probeRedis = createRedis(env.REDIS_URL, 'commands', 'dijiang:gateway:commands', logger);
  await connectRedisOrFail(probeRedis, env.REDIS_URL);
  const services = await createServices(env, logger, apiKeys, probeRedis);
  if (services.apiKeys.disabled) {
    logger.warn({ host: env.HOST }, 'AUTH_DISABLED=true: every route is open, as tenant "local"');
  } else if (services.apiKeys.count === 0) {
    logger.warn(
      'no API keys configured (API_KEYS, ADMIN_API_KEYS, API_KEYS_FILE): /v1 answers 401',
    );
  }

  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot(services),
    // Nest types its options as a class; a plain object is what its own docs pass.
    // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
    { logger: new NestPinoLogger(logger), abortOnError: false, bodyParser: false },
  );
  app.useGlobalFilters(new OpenAiExceptionFilter(logger));
  app.use(requestLogging(logger));
  app.use(httpMetrics(services.metrics));
  app.use('/v1', authMiddleware(services.apiKeys, services.limiter, 'api'));
  const dashboard = queueDashboard(() => [
    ...services.jobs.known().values(),
    services.batches.queue,
  ]);
  app.use(
    DASHBOARD_PATH,
    authMiddleware(services.apiKeys, services.limiter, 'admin'),
    dashboard.sync,
    dashboard.router,
  );
  app.use(jsonBody(env.MAX_BODY_BYTES));
  const openApi = buildOpenApi(CONTROLLERS, API_VERSION);
  app.use('/docs/openapi.json', (_request: unknown, response: { json(body: unknown): void }) => {
    response.json(openApi);
  });
  app.use('/docs', swaggerUi.serve, swaggerUi.setup(openApi));
  app.enableShutdownHooks();
  await app.listen(env.PORT, env.HOST);

  const address = app.getHttpServer().address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  logger.info({ url, port: address.port }, ReadyMessage.Gateway);
});
