# syntax=docker/dockerfile:1
# JIT funding gateway: build with the full toolchain, run with production dependencies only.
#   docker build -t jit-gateway .            (or: docker compose up --build)
ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app

# package.json `overrides` point at local folders (file:./stubs/...): they must exist before npm ci.
COPY package.json package-lock.json ./
COPY stubs/ ./stubs/
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src/ ./src/
COPY plugins/ ./plugins/
COPY routes/ ./routes/
COPY bench/ ./bench/
COPY migrations/ ./migrations/
RUN npm run build

# ---------------------------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json ./
COPY stubs/ ./stubs/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Compiled code, and the SQL migrations applied at boot (read from ./migrations relative to the working directory).
# Files stay owned by root: the service only reads them.
COPY --from=build /app/dist ./dist
COPY --from=build /app/migrations ./migrations

USER node
EXPOSE 3000

# /ready is 503 when PostgreSQL is unusable or the process is under pressure (see DESIGN.md section 9).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/ready', { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

CMD ["node", "dist/src/server.js"]
