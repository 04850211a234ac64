# syntax=docker/dockerfile:1
# The CPU worker image (build context: the repository root). It also serves as the one-shot model
# builder in docker-compose.yml (`node bin/dijiang.js model convert …` of the committed default
# checkpoint), so it carries bin/ and checkpoints/.
# Stages: `build` compiles TypeScript with every dependency, `prod-deps` installs production
# dependencies only, and the final stage carries just those, the compiled dist/ and tini.

FROM node:20.19.5-bookworm-slim AS build
WORKDIR /app
# The CPU execution provider ships inside onnxruntime-node; skip its CUDA download.
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
ENV NODE_ENV=production MODEL_DIR=/models ENGINE_DEVICE=cpu
# glibc malloc keeps onnxruntime's large per-step outputs in the heap instead of mapping and
# unmapping them every step (see libs/processes/src/malloc-tuning.ts).
ENV MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824
COPY package.json ./
COPY --from=prod-deps /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY bin bin
COPY checkpoints checkpoints
# A named volume mounted on /models starts with this folder's owner, so the model builder,
# running as `node`, can write the bundle into it.
RUN mkdir /models && chown node:node /models
USER node
# The worker has no HTTP port. Liveness of the process itself needs no check: tini exits when
# the worker exits, and the restart policy replaces the container. What a check can add is
# "registered and heartbeating": the worker's own record (host = this container's hostname) is
# live in Redis's worker registry — the same list /health/ready shows. The check is a compiled
# script of the worker app (apps/worker/src/healthcheck.ts); REDIS_URL and QUEUE_PREFIX come from
# the worker's env schema, so the defaults are the worker's own.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "dist/apps/worker/src/healthcheck.js"]
# tini is PID 1: it forwards SIGTERM to node, so the worker checkpoints its sequences and hands
# its jobs back (SHUTDOWN_GRACE_MS), and it reaps zombies.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/apps/worker/src/main.js"]
