#!/usr/bin/env node
// Build EduRPG's database at a PostgreSQL URL exactly as `prisma db push` does, offline.
//
//   node build_db.mjs <postgresql://...> [--without-external-ref] [--force-reset]
//
// Runs the `prisma` CLI from node_modules with prisma.config.ts (JavaScript schema engine in WebAssembly +
// @prisma/adapter-pg), so no native engine binary is needed or downloaded. --without-external-ref pushes a
// copy of schema.prisma without the ExternalRef model: the database EduRPG's committed migrations produce.
// --force-reset drops everything in the schema first (prisma db push --force-reset).
// Prints one JSON line ({"ok": true, ...}) on success; exits non-zero with a one-line error otherwise.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const PRISMA_CLI = join(HERE, "node_modules", "prisma", "build", "index.js");
const TIMEOUT_MS = Number(process.env.EDURPG_PRISMA_TIMEOUT_MS ?? 120_000);

// Nothing may try to reach binaries.prisma.sh or Prisma's telemetry.
export const OFFLINE_ENV = {
  PRISMA_SKIP_POSTINSTALL_GENERATE: "1",
  PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING: "1",
  PRISMA_GENERATE_SKIP_AUTOINSTALL: "1",
  PRISMA_HIDE_UPDATE_MESSAGE: "1",
  PRISMA_DISABLE_WARNINGS: "1",
  CHECKPOINT_DISABLE: "1",
  NO_COLOR: "1",
};

function fail(message) {
  process.stderr.write(`build_db: ${message.replace(/\s+/g, " ").trim()}\n`);
  process.exit(1);
}

/** schema.prisma's text without `model <name> { ... }` (and the comment line right above it). */
export function withoutModel(schema, name) {
  const block = new RegExp(`(^//[^\\n]*\\n)*^model ${name} \\{[\\s\\S]*?^\\}\\n?`, "m");
  if (!block.test(schema)) throw new Error(`model ${name} not found in schema.prisma`);
  return schema.replace(block, "");
}

function main(argv) {
  const flags = new Set(argv.filter((a) => a.startsWith("--")));
  const positional = argv.filter((a) => !a.startsWith("--"));
  const unknown = [...flags].filter((f) => !["--without-external-ref", "--force-reset"].includes(f));
  if (unknown.length) fail(`unknown option(s) ${unknown.join(", ")}`);
  const url = positional[0] ?? process.env.DATABASE_URL;
  if (!url || !/^postgres(ql)?:\/\//.test(url)) {
    fail("usage: node build_db.mjs <postgresql://user@host:port/db> [--without-external-ref] [--force-reset]");
  }
  const withExternalRef = !flags.has("--without-external-ref");

  let schemaPath = join(HERE, "schema.prisma");
  let scratch = null;
  if (!withExternalRef) {
    scratch = mkdtempSync(join(tmpdir(), "edurpg-prisma-"));
    schemaPath = join(scratch, "schema.prisma");
    writeFileSync(schemaPath, withoutModel(readFileSync(join(HERE, "schema.prisma"), "utf8"), "ExternalRef"));
  }
  const args = [PRISMA_CLI, "db", "push", "--skip-generate", "--schema", schemaPath];
  if (flags.has("--force-reset")) args.push("--force-reset");
  const started = Date.now();
  try {
    const run = spawnSync(process.execPath, args, {
      cwd: HERE, // prisma.config.ts is found here
      env: { ...process.env, ...OFFLINE_ENV, DATABASE_URL: url },
      encoding: "utf8",
      timeout: TIMEOUT_MS,
    });
    if (run.error) fail(`prisma db push did not run: ${run.error.message}`);
    const output = `${run.stdout ?? ""}\n${run.stderr ?? ""}`;
    if (run.status !== 0) {
      const lines = output.split("\n").map((l) => l.trim()).filter(Boolean);
      const error = lines.find((l) => /^Error/.test(l)) ?? lines.slice(-3).join(" ");
      fail(`prisma db push exited ${run.status ?? run.signal}: ${error}`);
    }
    if (!/in sync with (your|the) Prisma schema/.test(output)) {
      fail(`prisma db push gave no success message: ${output.slice(-400)}`);
    }
    process.stdout.write(
      JSON.stringify({ ok: true, withExternalRef, elapsedMs: Date.now() - started, schema: schemaPath }) + "\n",
    );
  } finally {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main(process.argv.slice(2));
