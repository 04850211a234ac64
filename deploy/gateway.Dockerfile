# syntax=docker/dockerfile:1
# The gateway image: NestJS HTTP API on port 8080 (build context: the repository root).
# Stages: `build` compiles TypeScript with every dependency, `prod-deps` installs production
# dependencies only, and the final stage carries just those, the compiled dist/ and tini.

FROM node:20.19.5-bookworm-slim AS build
WORKDIR /app
# The gateway never runs a model: skip onnxruntime-node's CUDA download.
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY apps apps
COPY libs libs
RUN npm run build

FROM node:20.19.5-bookworm-slim AS prod-deps
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20.19.5-bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# HOST 0.0.0.0: reachable from other containers. The gateway refuses AUTH_DISABLED on a
# non-loopback address, so API_KEYS (or API_KEYS_FILE) must be given at run time.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
COPY package.json ./
COPY --from=prod-deps /app/node_modules node_modules
COPY --from=build /app/dist dist
USER node
EXPOSE 8080
# /health/live answers 200 while the process serves HTTP; it needs no API key and does not
# depend on Redis, so a Redis outage does not mark every gateway unhealthy at once.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || '8080') + '/health/live').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# tini is PID 1: it forwards SIGTERM to node (graceful shutdown) and reaps zombies.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/apps/gateway/src/main.js"]
