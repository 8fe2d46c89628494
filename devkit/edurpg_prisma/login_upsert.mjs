#!/usr/bin/env node
// What EduRPG's login does to "User" after a successful Bakaláři login, with Prisma's generated client: an upsert
// by bakalariId (`UserUID || UserId` of /api/3/user), storing the Bakaláři token it kept.
//
//   node login_upsert.mjs <postgresql://...> '<JSON list of {bakalariId, name, role, token, email?}>'
//
// Prints one JSON document: [{bakalariId, id, created}] in input order, created=true when the upsert made a new
// row (i.e. the login did not find the user the sync wrote). Exits 1 with a one-line error on failure.
import { PrismaPg } from "@prisma/adapter-pg";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));

async function main(argv) {
  const [url, json] = argv;
  if (!url || !/^postgres(ql)?:\/\//.test(url) || !json) {
    throw new Error("usage: node login_upsert.mjs <postgresql://...> '<JSON logins>'");
  }
  const logins = JSON.parse(json);
  const { PrismaClient } = await import(pathToFileURL(join(HERE, "generated", "client", "index.js")).href);
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
  const out = [];
  try {
    for (const login of logins) {
      const before = await prisma.user.findUnique({ where: { bakalariId: login.bakalariId } });
      const user = await prisma.user.upsert({
        where: { bakalariId: login.bakalariId },
        update: { name: login.name, bakalariToken: login.token ?? null },
        create: {
          email: login.email ?? `${login.bakalariId}@bakalari.local`,
          name: login.name,
          role: login.role ?? "STUDENT",
          bakalariId: login.bakalariId,
          bakalariToken: login.token ?? null,
        },
      });
      out.push({ bakalariId: login.bakalariId, id: user.id, created: before === null });
    }
  } finally {
    await prisma.$disconnect();
  }
  return out;
}

main(process.argv.slice(2)).then(
  (out) => process.stdout.write(JSON.stringify(out) + "\n"),
  (error) => {
    const code = error?.code ? `${error.code} ` : "";
    const lines = String(error?.message ?? error).split("\n").map((l) => l.trim()).filter(Boolean);
    process.stderr.write(`login_upsert: ${code}${lines[lines.length - 1] ?? ""}`.slice(0, 600) + "\n");
    process.exit(1);
  },
);
