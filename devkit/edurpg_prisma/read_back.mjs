#!/usr/bin/env node
// Read EduRPG's database back the way EduRPG does: with Prisma's generated client ("client" engine: the query
// compiler in WebAssembly) over @prisma/adapter-pg. Proves the rows another writer (the sync) left there are
// readable and writable by Prisma.
//
//   node read_back.mjs <postgresql://...> [--allow-missing-external-ref] [--row-limit N]
//
// Prints one JSON document on stdout:
//   counts      every model's findMany() row count (and count() agrees)
//   missing     models whose table does not exist (only ExternalRef, and only with the flag above)
//   relations   what the includes resolved (User.class, User.enrollments.{subject,class}, Class.users, ...)
//   lookups     EduRPG's own queries: user by bakalariId (findUnique), a class's students, a student's enrollments
//   writes      update of a Class (then restored, updatedAt included), create+delete of an Enrollment and a Class
//   rows        the synced models' rows as Prisma reads them (DateTime as ISO strings), up to --row-limit each
// Exits 1 with a one-line error on stderr when anything fails.
import { PrismaPg } from "@prisma/adapter-pg";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const LOOKUP_SAMPLE = 50; // how many users/classes the lookups check
const ROW_MODELS = ["User", "Class", "Subject", "Enrollment", "ExternalRef", "SystemLog"];

let step = "start";

function oneLine(error) {
  const code = error?.code ? `${error.code} ` : "";
  // Prisma's messages start with "Invalid `prisma.x.y()` invocation" and a code frame; the cause is last.
  const lines = String(error?.message ?? error).split("\n").map((l) => l.trim()).filter(Boolean);
  const message = (lines.length > 1 && /^Invalid `/.test(lines[0]) ? lines[lines.length - 1] : lines.join(" "))
    .replace(/\s+/g, " ");
  return `${code}${message}`.slice(0, 600);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const lower = (model) => model[0].toLowerCase() + model.slice(1);

async function main(argv) {
  const allowMissingExternalRef = argv.includes("--allow-missing-external-ref");
  const limitAt = argv.indexOf("--row-limit");
  const rowLimit = limitAt >= 0 ? Number(argv[limitAt + 1]) : 10_000;
  const url = argv.find((a, i) => !a.startsWith("--") && argv[i - 1] !== "--row-limit") ?? process.env.DATABASE_URL;
  if (!url || !/^postgres(ql)?:\/\//.test(url)) {
    throw new Error("usage: node read_back.mjs <postgresql://user@host:port/db> [--allow-missing-external-ref]");
  }

  step = "load the generated client";
  const clientUrl = pathToFileURL(join(HERE, "generated", "client", "index.js")).href;
  const { PrismaClient, Prisma } = await import(clientUrl).catch((e) => {
    throw new Error(`generated client missing (run devkit/install/edurpg_prisma.sh): ${e.message}`);
  });
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
  const started = Date.now();
  const out = {
    prisma: { client: Prisma.prismaVersion.client, engineType: "client", adapter: "@prisma/adapter-pg" },
    counts: {},
    missing: [],
    relations: {},
    lookups: {},
    writes: {},
    rows: {},
  };
  try {
    // --- every model: findMany and count -------------------------------------------------------------------
    for (const model of Object.values(Prisma.ModelName)) {
      step = `${model}.findMany`;
      try {
        const rows = await prisma[lower(model)].findMany();
        const counted = await prisma[lower(model)].count();
        check(rows.length === counted, `${model}: findMany returned ${rows.length} rows, count() ${counted}`);
        out.counts[model] = rows.length;
      } catch (error) {
        // P2021: "The table ... does not exist in the current database."
        if (model === "ExternalRef" && allowMissingExternalRef && error?.code === "P2021") {
          out.missing.push(model);
          continue;
        }
        throw error;
      }
    }

    // --- relations -------------------------------------------------------------------------------------------
    step = "User with class and enrollments";
    const users = await prisma.user.findMany({
      include: { class: true, enrollments: { include: { subject: true, class: true } } },
    });
    let usersWithClass = 0;
    let enrollmentsResolved = 0;
    for (const u of users) {
      if (u.classId !== null) {
        check(u.class?.id === u.classId, `User ${u.id}: class ${u.classId} did not resolve`);
        usersWithClass += 1;
      }
      for (const e of u.enrollments) {
        check(e.userId === u.id, `Enrollment ${e.id}: userId ${e.userId} under User ${u.id}`);
        check(e.subject?.id === e.subjectId, `Enrollment ${e.id}: subject ${e.subjectId} did not resolve`);
        check(e.class?.id === e.classId, `Enrollment ${e.id}: class ${e.classId} did not resolve`);
        enrollmentsResolved += 1;
      }
    }
    step = "Class with users and enrollments";
    const classes = await prisma.class.findMany({ include: { users: true, enrollments: true } });
    const classUsers = classes.reduce((n, c) => n + c.users.length, 0);
    check(classUsers === usersWithClass, `Class.users holds ${classUsers} users, User.class ${usersWithClass}`);
    step = "Subject with enrollments";
    const subjects = await prisma.subject.findMany({ include: { enrollments: { include: { user: true } } } });
    const subjectEnrollments = subjects.reduce((n, s) => n + s.enrollments.length, 0);
    check(
      subjectEnrollments === out.counts.Enrollment,
      `Subject.enrollments holds ${subjectEnrollments}, Enrollment has ${out.counts.Enrollment} rows`,
    );
    step = "Enrollment with user, subject and class";
    const enrollments = await prisma.enrollment.findMany({ include: { user: true, subject: true, class: true } });
    for (const e of enrollments) check(e.user && e.subject && e.class, `Enrollment ${e.id}: a relation is null`);
    step = "SystemLog with user; XPAudit with user";
    const logs = await prisma.systemLog.findMany({ include: { user: true } });
    for (const l of logs) check(l.userId === null || l.user?.id === l.userId, `SystemLog ${l.id}: user unresolved`);
    const audits = await prisma.xPAudit.findMany({ include: { user: true } });
    for (const a of audits) check(a.user?.id === a.userId, `XPAudit ${a.id}: user unresolved`);
    out.relations = {
      usersWithClass,
      userEnrollmentsResolved: enrollmentsResolved,
      classUsers,
      classEnrollments: classes.reduce((n, c) => n + c.enrollments.length, 0),
      subjectEnrollments,
      enrollmentsFullyResolved: enrollments.length,
      systemLogsWithUser: logs.filter((l) => l.user).length,
      xpAuditsWithUser: audits.length,
    };

    // --- EduRPG's own lookups ----------------------------------------------------------------------------
    step = "User.findUnique by bakalariId";
    const withBakalari = users.filter((u) => u.bakalariId !== null).slice(0, LOOKUP_SAMPLE);
    for (const u of withBakalari) {
      const found = await prisma.user.findUnique({ where: { bakalariId: u.bakalariId } });
      check(found?.id === u.id, `findUnique({bakalariId: ${u.bakalariId}}) gave ${found?.id}, expected ${u.id}`);
    }
    const missingBakalari = await prisma.user.findUnique({ where: { bakalariId: "read_back: no such bakalariId" } });
    check(missingBakalari === null, "findUnique of an unknown bakalariId returned a row");
    step = "a class's students";
    let studentsSeen = 0;
    for (const c of classes.slice(0, LOOKUP_SAMPLE)) {
      const students = await prisma.user.findMany({
        where: { classId: c.id, role: "STUDENT" },
        orderBy: { name: "asc" },
      });
      const expected = c.users.filter((u) => u.role === "STUDENT").length;
      check(students.length === expected, `Class ${c.id}: ${students.length} students by query, ${expected} by include`);
      studentsSeen += students.length;
    }
    step = "a student's enrollments";
    let studentEnrollments = 0;
    for (const u of users.filter((x) => x.role === "STUDENT").slice(0, LOOKUP_SAMPLE)) {
      const own = await prisma.enrollment.findMany({
        where: { userId: u.id },
        include: { subject: true, class: true },
      });
      check(own.length === u.enrollments.length, `User ${u.id}: ${own.length} enrollments by query`);
      studentEnrollments += own.length;
    }
    out.lookups = {
      usersByBakalariId: withBakalari.length,
      classesQueried: Math.min(classes.length, LOOKUP_SAMPLE),
      studentsInQueriedClasses: studentsSeen,
      studentEnrollments,
    };

    // --- writes on synced rows (each undone) ---------------------------------------------------------------
    step = "Class.update then restore";
    if (classes.length) {
      const c = classes[0];
      const changed = await prisma.class.update({ where: { id: c.id }, data: { name: `${c.name} (prisma)` } });
      check(changed.name === `${c.name} (prisma)`, "Class.update did not change the name");
      const restored = await prisma.class.update({
        where: { id: c.id },
        data: { name: c.name, updatedAt: c.updatedAt },
      });
      check(restored.name === c.name && restored.updatedAt.getTime() === c.updatedAt.getTime(), "restore failed");
      out.writes.classUpdate = {
        id: c.id,
        updatedAtBefore: c.updatedAt.toISOString(),
        updatedAtByPrisma: changed.updatedAt.toISOString(),
        restored: true,
      };
    } else {
      out.writes.classUpdate = { skipped: "no Class rows" };
    }
    step = "Enrollment.create then delete";
    const pair = (() => {
      const taken = new Set(enrollments.map((e) => `${e.userId}\u0000${e.subjectId}`));
      for (const u of users) {
        const classId = u.classId ?? classes[0]?.id;
        if (!classId) continue;
        const s = subjects.find((x) => !taken.has(`${u.id}\u0000${x.id}`));
        if (s) return { userId: u.id, subjectId: s.id, classId };
      }
      return null;
    })();
    if (pair) {
      const created = await prisma.enrollment.create({
        data: {
          user: { connect: { id: pair.userId } },
          subject: { connect: { id: pair.subjectId } },
          class: { connect: { id: pair.classId } },
        },
        include: { user: true, subject: true, class: true },
      });
      check(created.user.id === pair.userId && created.subject.id === pair.subjectId, "created Enrollment relations");
      await prisma.enrollment.delete({ where: { id: created.id } });
      check((await prisma.enrollment.count()) === out.counts.Enrollment, "Enrollment count after delete");
      out.writes.enrollmentCreate = {
        id: created.id,
        createdAt: created.createdAt.toISOString(),
        updatedAt: created.updatedAt.toISOString(),
        deleted: true,
      };
    } else {
      out.writes.enrollmentCreate = { skipped: "no User/Subject/Class combination without an Enrollment" };
    }
    step = "Class.create then delete";
    const made = await prisma.class.create({ data: { name: "read_back probe", grade: 1 } });
    await prisma.class.delete({ where: { id: made.id } });
    out.writes.classCreate = {
      id: made.id,
      createdAt: made.createdAt.toISOString(),
      updatedAt: made.updatedAt.toISOString(),
      deleted: true,
    };

    // --- the synced rows as Prisma reads them ----------------------------------------------------------------
    for (const model of ROW_MODELS) {
      if (out.missing.includes(model)) continue;
      step = `${model} rows`;
      const rows = await prisma[lower(model)].findMany({ orderBy: { id: "asc" }, take: rowLimit });
      out.rows[model] = rows; // JSON.stringify turns Date into an ISO string (UTC, milliseconds)
    }
    out.elapsedMs = Date.now() - started;
  } finally {
    await prisma.$disconnect();
  }
  return out;
}

main(process.argv.slice(2)).then(
  (out) => {
    process.stdout.write(JSON.stringify(out) + "\n");
  },
  (error) => {
    process.stderr.write(`read_back: ${step}: ${oneLine(error)}\n`);
    process.exit(1);
  },
);
