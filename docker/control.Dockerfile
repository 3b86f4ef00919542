# syntax=docker/dockerfile:1
# Built by `sst deploy` (stacks/images.ts) with the repository root as context, reduced to package manifests, the
# lock file, the packages' sources and docker/ (BUILD_CONTEXT_EXCLUDE). By hand, from the repository root:
#   docker build -f docker/control.Dockerfile .
FROM node:22-bookworm-slim
# onnxruntime-node's install step would fetch CUDA libraries; the CPU runtime ships in the package.
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=skip \
    npm_config_update_notifier=false
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY packages/ packages/
# Production dependencies from the lock file, plus tsx (a dev dependency of the root) at the lock file's version in a
# prefix of its own: the entries run as TypeScript with `node --import tsx`, as locally. onnxruntime-node ships macOS
# and Windows binaries too (220 of its 288 MB): only Linux's stay. Seen on Node 20 outside Docker: node_modules
# 410 MB before, ~190 MB after, and the agent entry starts from it.
RUN npm ci --omit=dev --no-audit --no-fund \
 && tsx_version="$(node -p "require('./package-lock.json').packages['node_modules/tsx'].version")" \
 && npm install --prefix /opt/tsx --no-save --no-package-lock --no-audit --no-fund "tsx@${tsx_version}" \
 && ln -s /opt/tsx/node_modules/tsx node_modules/tsx \
 && rm -rf node_modules/onnxruntime-node/bin/napi-v*/darwin node_modules/onnxruntime-node/bin/napi-v*/win32 \
 && npm cache clean --force \
 && chown node:node /app
USER node
# The scheduler, TERN_DATAFLOW_WORKERS dataflow workers and the ECS controller under one supervisor
# (packages/control); SIGTERM drains them all (the task's stopTimeout is 60 s).
EXPOSE 9004
CMD ["node", "--import", "tsx", "packages/control/src/main.ts"]
