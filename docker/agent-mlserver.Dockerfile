# syntax=docker/dockerfile:1
# Built by `sst deploy` (stacks/images.ts) with the repository root as context, reduced to package manifests, the
# lock file, the packages' sources and docker/ (BUILD_CONTEXT_EXCLUDE). By hand, from the repository root:
#   docker build -f docker/agent-mlserver.Dockerfile .
FROM node:22-bookworm-slim
# onnxruntime-node's install step would fetch CUDA libraries; the CPU runtime ships in the package.
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=skip \
    npm_config_update_notifier=false
# MLServer (Seldon's Python server) in a venv at /opt/mlserver with exactly the pins `scripts/python-env.sh mlserver`
# installs locally (scripts/python/mlserver.txt: its whole closure, installed with --no-deps as the file says).
# Debian bookworm's Python is 3.11, inside the file's supported 3.11–3.12. First, so a code change keeps this layer.
COPY scripts/python/mlserver.txt /tmp/mlserver.txt
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/mlserver \
 && pip_options="$(sed -n 's/^# pip: *//p' /tmp/mlserver.txt | head -1)" \
 && /opt/mlserver/bin/python -m pip install --no-cache-dir --disable-pip-version-check --no-input ${pip_options} -r /tmp/mlserver.txt \
 && rm /tmp/mlserver.txt
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
# An agent of server type mlserver: it runs one MLServer process and proxies OIP REST 9500 / gRPC 9501 to it.
ENV TERN_AGENT_SERVER_TYPE=mlserver \
    TERN_MLSERVER_PYTHON=/opt/mlserver/bin/python
EXPOSE 9500 9501
CMD ["node", "--import", "tsx", "packages/agent/src/main.ts"]
