// Prisma CLI configuration: the JavaScript schema engine (WebAssembly, shipped in the `prisma` npm package)
// talking to PostgreSQL through the pg driver adapter, so that `prisma db push` never needs the native
// schema-engine binary (which Prisma would otherwise download from binaries.prisma.sh).
//
// Workaround for prisma/orm#27403 (open in 6.19): @prisma/adapter-pg cannot decode PostgreSQL's `name` type
// (OID 19) nor `"char"` (OID 18), which the schema engine's introspection of pg_catalog returns, so `db push`
// fails with "Column type 'name' could not be deserialized from the database". The pool below hands the
// adapter such columns labelled as `text` (pg returns their values as plain strings either way).
import pg from "pg";
import { defineConfig } from "prisma/config";
import { PrismaPg } from "@prisma/adapter-pg";

// pg_catalog's internal string types: "char" (18) and name (19).
const CATALOG_STRING_OIDS = new Set([18, 19]);
const TEXT_OID = 25;

function nameAsText(result: any) {
  for (const res of Array.isArray(result) ? result : [result]) {
    for (const field of res?.fields ?? []) {
      if (CATALOG_STRING_OIDS.has(field.dataTypeID)) field.dataTypeID = TEXT_OID;
    }
  }
  return result;
}

class NameAsTextClient extends pg.Client {
  query(...args: any[]): any {
    const last = args[args.length - 1];
    if (typeof last === "function") {
      args[args.length - 1] = (err: unknown, res: unknown) => last(err, err ? res : nameAsText(res));
      return (super.query as any)(...args);
    }
    const out = (super.query as any)(...args);
    return out && typeof out.then === "function" ? out.then(nameAsText) : out;
  }
}

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: "schema.prisma", // build_db.mjs passes --schema for the copy without ExternalRef
  async adapter() {
    const connectionString = process.env.DATABASE_URL;
    if (!connectionString) throw new Error("DATABASE_URL is not set");
    return new PrismaPg(new pg.Pool({ connectionString, Client: NameAsTextClient, allowExitOnIdle: true }), {
      disposeExternalPool: true,
    });
  },
});
