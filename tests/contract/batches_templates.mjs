// Drive the BatchService and TemplateService of a running control plane from
// the protos alone (@grpc/proto-loader + @grpc/grpc-js, no generated code),
// and print what happened as one JSON object on stdout.
//
// Usage: node tests/contract/batches_templates.mjs HOST:PORT

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(path.join(REPO_ROOT, "package.json"));
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const definition = protoLoader.loadSync(["maos/v1/batch_service.proto", "maos/v1/template_service.proto"], {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  includeDirs: [path.join(REPO_ROOT, "protos")],
});
const maos = grpc.loadPackageDefinition(definition).maos.v1;
const address = process.argv[2];
const batches = new maos.BatchService(address, grpc.credentials.createInsecure());
const templates = new maos.TemplateService(address, grpc.credentials.createInsecure());

function call(client, method, request) {
  return new Promise((resolve) => {
    client[method](request, { deadline: Date.now() + 10000 }, (error, response) => {
      resolve(error ? { code: grpc.status[error.code], details: error.details } : response);
    });
  });
}

const out = {};
out.created = await call(batches, "CreateBatch", { display_name: "node batch" });
await call(batches, "AddBatchTask", { batch: "node batch", task: { description: "first", priority: "PRIORITY_HIGH" } });
out.added = await call(batches, "AddBatchTask", { batch: "node batch", task: { description: "second" } });
out.submitted = await call(batches, "SubmitBatch", { name: "node batch", schedule: "BATCH_SCHEDULE_SEQUENTIAL" });
out.again = await call(batches, "SubmitBatch", { name: out.created.batch.name });
out.status = await call(batches, "GetBatch", { name: "node batch" });
out.listed = await call(batches, "ListBatches", {});
out.results = await call(batches, "GetBatchResults", { name: "node batch" });
out.deleteRunning = await call(batches, "DeleteBatch", { name: "node batch" });
out.missingBatch = await call(batches, "GetBatch", { name: "no such batch" });

out.template = await call(templates, "CreateTemplate", {
  template: {
    display_name: "node template", description: "APIs",
    task: { description: "Build an API in {language} with {framework}" },
    parameters: [{ name: "language" }, { name: "framework", default_value: "fastapi" }],
  },
});
out.missingParam = await call(templates, "SubmitTaskFromTemplate", { template: "node template", params: {} });
out.unknownParam = await call(templates, "SubmitTaskFromTemplate",
  { template: "node template", params: { language: "go", colour: "red" } });
out.fromTemplate = await call(templates, "SubmitTaskFromTemplate",
  { template: "node template", params: { language: "python" } });
out.shown = await call(templates, "GetTemplate", { name: "node template" });
out.templates = await call(templates, "ListTemplates", {});
out.deleted = await call(templates, "DeleteTemplate", { name: out.template.template.name });
out.deletedAgain = await call(templates, "DeleteTemplate", { name: "node template" });

batches.close();
templates.close();
console.log(JSON.stringify(out));
