import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { gatewayEnvSchema, loadConfig } from '#config';
import { bootOrExit, connectRedisOrFail, createLogger, createRedis, ReadyMessage } from '#cluster';
import { AppModule } from './app.module.js';
import { NestPinoLogger } from './common/nest-logger.js';
import { requestLogging } from './common/request-logging.js';

bootOrExit(async () => {
  const env = loadConfig(gatewayEnvSchema);
  const logger = createLogger('gateway', env.LOG_LEVEL);
  const probeRedis = createRedis(env.REDIS_URL, 'probe', 'dijiang:gateway:probe');
  await connectRedisOrFail(probeRedis, env.REDIS_URL);

  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot({ env, logger, probeRedis }),
    // Nest types its options as a class; a plain object is what its own docs pass.
    // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
    { logger: new NestPinoLogger(logger), abortOnError: false },
  );
  app.use(requestLogging(logger));
  app.enableShutdownHooks();
  await app.listen(env.PORT, env.HOST);

  const address = app.getHttpServer().address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  logger.info({ url, port: address.port }, ReadyMessage.Gateway);
});
