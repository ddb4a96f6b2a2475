// Load every protos/maos/v1/*.proto with @grpc/proto-loader and @grpc/grpc-js
// and print what Node.js sees of the MAOS contract as JSON on stdout:
//
//   {"files": ["maos/v1/enums.proto", ...],
//    "services": {"maos.v1.TaskService": ["SubmitTask", ...], ...},
//    "messages": <number of message types in package maos.v1>}
//
// "files" lists the files handed to loadSync (which throws unless it can
// load and resolve every one of them and their imports), "services" the services found in the loaded package (objects with a
// `service` property) with their method names, "messages" counts message
// types (nested ones included) of package maos.v1, not the imported
// google.protobuf ones. Any error exits non-zero with a message on stderr.
//
// Usage: node tests/contract/load_protos.mjs   (from any directory)

import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const INCLUDE_DIR = path.join(REPO_ROOT, "protos");
const PACKAGE_DIR = path.join("maos", "v1");
const PACKAGE = "maos.v1";

function protoFiles() {
  const files = readdirSync(path.join(INCLUDE_DIR, PACKAGE_DIR))
    .filter((name) => name.endsWith(".proto"))
    .sort()
    .map((name) => path.posix.join("maos", "v1", name));
  if (files.length === 0) {
    throw new Error(`no .proto files under ${path.join(INCLUDE_DIR, PACKAGE_DIR)}`);
  }
  return files;
}

// Resolve the npm packages from the repository, whatever the cwd.
const require = createRequire(path.join(REPO_ROOT, "package.json"));

function main() {
  const protoLoader = require("@grpc/proto-loader");
  const grpc = require("@grpc/grpc-js");

  const files = protoFiles();
  const definition = protoLoader.loadSync(files, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [INCLUDE_DIR],
  });

  const messages = Object.entries(definition).filter(
    ([name, def]) => def.format === "Protocol Buffer 3 DescriptorProto" && name.startsWith(`${PACKAGE}.`),
  ).length;

  const services = {};
  const walk = (node, prefix) => {
    for (const [key, value] of Object.entries(node)) {
      const fullName = prefix ? `${prefix}.${key}` : key;
      if (typeof value === "function" && value.service) {
        // Method names from the RPC paths: "/maos.v1.TaskService/SubmitTask".
        services[fullName] = Object.values(value.service)
          .map((method) => method.path.split("/").pop())
          .sort();
      } else if (value && typeof value === "object" && !("format" in value)) {
        walk(value, fullName); // a package namespace
      }
    }
  };
  walk(grpc.loadPackageDefinition(definition), "");
  if (Object.keys(services).length === 0) {
    throw new Error("no services found in the loaded package definition");
  }

  const sortedServices = Object.fromEntries(Object.keys(services).sort().map((name) => [name, services[name]]));
  const out = { files, services: sortedServices, messages };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

try {
  main();
} catch (error) {
  process.stderr.write(`load_protos.mjs: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
}
