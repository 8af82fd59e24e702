# The demo app under request-budget, for docker-compose.yml. Build from the repository root.
FROM node:24-slim
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages packages
COPY examples examples
RUN npm ci --no-audit --no-fund && npm run build
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000 9464
CMD ["node", "--require", "@request-budget/node/register", "examples/demo/app.js"]
