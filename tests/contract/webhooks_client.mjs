// A WebhookService client built from protos/ alone (@grpc/proto-loader + @grpc/grpc-js), as a
// client in any language would be: it creates a webhook, sends it a test event, lists its
// deliveries, and prints what it got as JSON on stdout. Any error exits non-zero.
//
// Usage: node tests/contract/webhooks_client.mjs HOST:PORT RECEIVER_URL SECRET

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(path.join(REPO_ROOT, "package.json"));
const protoLoader = require("@grpc/proto-loader");
const grpc = require("@grpc/grpc-js");

const [address, url, secret] = process.argv.slice(2);
const definition = protoLoader.loadSync(["maos/v1/webhook_service.proto"], {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  includeDirs: [path.join(REPO_ROOT, "protos")],
});
const { WebhookService } = grpc.loadPackageDefinition(definition).maos.v1;
const client = new WebhookService(address, grpc.credentials.createInsecure());

function call(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 20000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

async function main() {
  const created = await call("CreateWebhook", {
    webhook: { url, events: ["task.completed", "task.failed"], secret },
  });
  const name = created.webhook.name;
  const tested = await call("TestWebhook", { name });
  const log = await call("ListWebhookDeliveries", { webhook: name });
  let badField = "";
  try {
    await call("CreateWebhook", { webhook: { url: "ftp://example.com/x", events: ["task.failed"] } });
  } catch (error) {
    badField = `${grpc.status[error.code]} ${error.details}`;
  }
  client.close();
  const out = { name, events: created.webhook.events, delivery: tested.delivery, log: log.deliveries, badField };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
