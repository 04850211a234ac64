# syntax=docker/dockerfile:1
# The CUDA worker image (build context: the repository root): onnxruntime's CUDA execution
# provider on the fp16 graph (a bundle built with `model create --fp16`; the compose model builder
# always writes it). Needs the NVIDIA Container Toolkit on the host; see the `gpu` profile in
# docker-compose.yml.
# Stages: `build` compiles TypeScript, `prod-deps` installs production dependencies only with
# onnxruntime-node's CUDA 12 libraries, `node-runtime` supplies the Node binary, and the final
# stage is NVIDIA's CUDA 12 runtime with cuDNN 9 (what onnxruntime's CUDA 12 build links against).

FROM node:20.19.5-bookworm-slim AS build
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY apps apps
COPY libs libs
RUN npm run build

FROM node:20.19.5-bookworm-slim AS prod-deps
WORKDIR /app
# onnxruntime-node's install script downloads the CUDA execution provider (not in the npm
# package: too large) at build time, so nothing is fetched when a container starts. `test -f`
# fails the build here, not at the first job, if the download did not happen.
ENV ONNXRUNTIME_NODE_INSTALL=cuda12
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
  && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so

# The Node binary of the same pinned official image as the other stages: one Node version across
# all images, without an unverified download in the CUDA stage.
FROM node:20.19.5-bookworm-slim AS node-runtime

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/* \
  && useradd --uid 10001 --create-home --shell /usr/sbin/nologin dijiang
COPY --from=node-runtime /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
ENV NODE_ENV=production MODEL_DIR=/models ENGINE_DEVICE=cuda
# glibc malloc keeps onnxruntime's large per-step outputs in the heap instead of mapping and
# unmapping them every step (see libs/processes/src/malloc-tuning.ts).
ENV MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824
COPY package.json ./
COPY --from=prod-deps /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY bin bin
USER dijiang
# Same check as the CPU worker (deploy/worker.Dockerfile says why): this container's worker is
# registered and heartbeating in Redis.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["node", "dist/apps/worker/src/healthcheck.js"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/apps/worker/src/main.js"]
