"""A throwaway, real Request Tracker 5 for tests and benchmarks, started from Debian's packages on a free port.

``devkit/install/request_tracker.sh`` installs the packages (request-tracker5, rt5-db-sqlite, rt5-standalone).
Each :class:`RequestTracker5` lives in its own temporary directory: its own ``RT_SiteConfig.pm`` (pointed at by
``RT_SITE_CONFIG``; ``RT_SITE_CONFIG_DIR`` points at an empty directory, so Debian's
``/etc/request-tracker5/RT_SiteConfig.d`` is not read), its own SQLite database, Mason cache, session directory,
RT log (``rt.log``) and Starlet access log (``access.log``), and a loopback port chosen by the OS, so several can run
at once (pytest-xdist). Mail is never sent: ``$MailCommand`` is a Perl sub that drops the message.

Setup goes through RT's own Perl API (``RT::LoadConfig(); RT::Init();`` in one long-lived ``perl`` subprocess per RT,
JSON requests in on stdin, answers out on stdout), so the data is exactly what RT itself would have written: user custom
fields of any type (``create_user_fields``; ``change_user_field`` retypes one as an admin would), users with custom
field values (``create_users``), rights and auth tokens (``create_token``). ``user_fields`` reads values back from RT's
database; ``access_log_requests`` counts what the server answered.

Runs as root as well (RT's standalone server does not switch users). ``stop()`` kills the server's process group
and removes the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx

INSTALL_HINT = (
    "run devkit/install/request_tracker.sh (Debian: request-tracker5, rt5-db-sqlite, rt5-standalone)"
)
RT_LIB_DIRS = ("/usr/share/request-tracker5/lib", "/opt/rt5/lib")
RT_SERVER_PATHS = ("/usr/share/request-tracker5/libexec/rt-server", "/opt/rt5/sbin/rt-server")
RT_SETUP_DATABASE_PATHS = ("/usr/sbin/rt-setup-database", "/opt/rt5/sbin/rt-setup-database")
# Rights a token's owner gets by default: enough to list users with their custom fields and to change them.
DEFAULT_RIGHTS = ("AdminUsers", "ShowUserHistory", "SeeCustomField", "ModifyCustomField")


class RequestTrackerMissing(RuntimeError):
    """RT's binaries are not installed (tests skip on this one only)."""


@dataclass(frozen=True)
class Binaries:
    rt_server: Path
    setup_database: Path
    lib: Path


def find_binaries() -> Binaries:
    def first(paths: Iterable[str], what: str) -> Path:
        for candidate in paths:
            if os.path.exists(candidate):
                return Path(candidate)
        raise RequestTrackerMissing(
            f"Request Tracker 5 not found ({what}: looked in {', '.join(paths)}); {INSTALL_HINT}"
        )

    return Binaries(
        rt_server=first(RT_SERVER_PATHS, "rt-server"),
        setup_database=first(RT_SETUP_DATABASE_PATHS, "rt-setup-database"),
        lib=first(RT_LIB_DIRS, "RT's Perl library"),
    )


@dataclass(frozen=True)
class UserField:
    """A user custom field to create: one free-form value unless ``type``/``max_values`` say otherwise (``Select``
    with its ``values`` listed, ``Combobox``, ...; ``max_values`` 0 is unlimited), applied to all users unless
    ``applied=False``."""

    name: str
    applied: bool = True
    disabled: bool = False
    # A Perl regular expression RT validates values against (e.g. ``^\\d+$``); RT refuses values that do not match.
    pattern: str = ""
    description: str = ""
    type: str = "Freeform"
    max_values: int = 1
    values: tuple[str, ...] = ()  # a Select's (or Combobox's) list, in this order


class AccessLogEntry(NamedTuple):
    method: str
    target: str  # path with query string, as requested
    status: int

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


# Apache "combined" format, as Plack::Middleware::AccessLog writes it.
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')

# One long-lived perl process per RT runs the setup helpers: RT::Init() costs ~1 s of CPU, paid once. It reads one
# JSON request a line ({"body": perl code, "input": ...}), runs the code as a sub with $input set and $result to
# fill, and answers one line, {"result": ..., "error": ...}, after a marker (anything else RT prints is skipped).
_PERL_SHELL = r"""
use strict;
use warnings;
use JSON ();
use RT;
RT::LoadConfig();
RT::Init();
$| = 1;
my $json = JSON->new->utf8->canonical;
sub fail { die "@_\n" }
while (my $line = <STDIN>) {
    my $request = $json->decode($line);
    # Rights granted since (by this process or through the server) must be seen.
    RT::Principal->InvalidateACLCache();
    my $result;
    my $ok = eval {
        my $code = eval "sub { my (\$input) = \@_; my \$result;\n$request->{body}\n; return \$result; }"
            or die $@;
        $result = $code->($request->{input});
        1;
    };
    my $error = $ok ? undef : ($@ || 'unknown error');
    $RT::Handle->ForceRollback if !$ok && $RT::Handle->TransactionDepth;
    print "\n__RESULT__", $json->encode({ result => $result, error => $error }), "\n";
}
"""

_PERL_CREATE_USER_FIELDS = r"""
for my $spec (@{ $input->{fields} }) {
    my $cf = RT::CustomField->new(RT->SystemUser);
    my ($id, $msg) = $cf->Create(
        Name        => $spec->{name},
        Type        => $spec->{type},
        MaxValues   => $spec->{max_values},
        LookupType  => 'RT::User',
        Pattern     => $spec->{pattern},
        Description => $spec->{description},
    );
    fail("custom field $spec->{name}: $msg") unless $id;
    my $order = 0;
    for my $value (@{ $spec->{values} }) {
        my ($ok, $why) = $cf->AddValue(Name => $value, SortOrder => $order++);
        fail("value '$value' of $spec->{name}: $why") unless $ok;
    }
    if ($spec->{applied}) {
        # Object id 0: applied globally, to every user.
        my ($ok, $why) = $cf->AddToObject(RT::User->new(RT->SystemUser));
        fail("applying $spec->{name} to users: $why") unless $ok;
    }
    if ($spec->{disabled}) {
        my ($ok, $why) = $cf->SetDisabled(1);
        fail("disabling $spec->{name}: $why") unless $ok;
    }
    $result->{ $spec->{name} } = $id;
}
"""

# An admin's change of a field's type (Admin > Custom Fields > the field): the values users hold stay as they are,
# whether the new type would accept them or not.
_PERL_CHANGE_USER_FIELD = r"""
my $cf = RT::CustomField->new(RT->SystemUser);
$cf->LoadByName(Name => $input->{name}, LookupType => 'RT::User');
fail("no user custom field named '$input->{name}'") unless $cf->id;
if (defined $input->{type} && $cf->Type ne $input->{type}) {
    my ($ok, $why) = $cf->SetType($input->{type});
    fail("type of $input->{name}: $why") unless $ok;
}
if (defined $input->{max_values} && $cf->MaxValues != $input->{max_values}) {
    my ($ok, $why) = $cf->SetMaxValues($input->{max_values});
    fail("MaxValues of $input->{name}: $why") unless $ok;
}
my $order = 0;
for my $value (@{ $input->{values} }) {
    my ($ok, $why) = $cf->AddValue(Name => $value, SortOrder => $order++);
    fail("value '$value' of $input->{name}: $why") unless $ok;
}
$result = { type => $cf->Type, max_values => $cf->MaxValues };
"""

_PERL_CREATE_USERS = r"""
my %field;
my $cfs = RT::CustomFields->new(RT->SystemUser);
$cfs->LimitToLookupType('RT::User');
$cfs->{'find_disabled_rows'} = 1;
while (my $cf = $cfs->Next) { $field{ $cf->Name } = $cf }
my @ids;
$RT::Handle->BeginTransaction;
for my $spec (@{ $input->{users} }) {
    my ($name, $email, $values) = @$spec;
    my $user = RT::User->new(RT->SystemUser);
    my ($id, $msg) = $user->Create(
        Name => $name, EmailAddress => $email, Privileged => $input->{privileged} ? 1 : 0,
    );
    fail("user $name: $msg") unless $id;
    for my $key (sort keys %$values) {
        my $cf = $field{$key} or fail("user $name: no user custom field named '$key'");
        # Through the custom field object, so a field that is not applied to users (or is disabled) can be
        # given a value too, as data left over from before.
        my ($ok, $why) = $cf->AddValueForObject(Object => $user, Content => $values->{$key});
        fail("user $name, $key = '$values->{$key}': $why") unless $ok;
    }
    push @ids, $id;
}
$RT::Handle->Commit;
$result = \@ids;
"""

_PERL_CREATE_TOKEN = r"""
my $user = RT::User->new(RT->SystemUser);
$user->Load($input->{name});
if (!$user->id) {
    my ($id, $msg) = $user->Create(
        Name => $input->{name}, EmailAddress => "$input->{name}\@example.test",
        Privileged => $input->{privileged} ? 1 : 0,
    );
    fail("user $input->{name}: $msg") unless $id;
}
elsif ($input->{privileged} && !$user->Privileged) {
    my ($ok, $why) = $user->SetPrivileged(1);
    fail("privileging $input->{name}: $why") unless $ok;
}
for my $right (@{ $input->{rights} }) {
    next if $user->PrincipalObj->HasRight(Right => $right, Object => RT->System);
    my ($ok, $why) = $user->PrincipalObj->GrantRight(Right => $right, Object => RT->System);
    fail("granting $right to $input->{name}: $why") unless $ok;
}
my $token = RT::AuthToken->new(RT->SystemUser);
my ($id, $msg, $authstring) = $token->Create(Owner => $user->id, Description => $input->{description});
fail("token for $input->{name}: $msg") unless $id;
$result = { token => $authstring, user_id => $user->id };
"""


class RequestTracker5:
    """``RequestTracker5(workers=2).start()`` ... ``.stop()``, or ``with RequestTracker5() as rt: ...``.

    ``workers`` is Starlet's ``--max-workers``: how many requests RT answers at once (each worker is a forked
    perl process). ``bcrypt_cost`` is RT's ``$BcryptCost`` (4..31; None keeps RT's default, 12): every
    token-authenticated request checks the token with bcrypt at that cost (~0.2-0.4 s of CPU at 12, ~1 ms at 4),
    so a test that is not about RT's own pace can make requests cheap with ``bcrypt_cost=4``. Tokens are hashed
    at the cost in force when they are created (the server reads the same site config).
    ``keepalive_requests`` is Starlet's ``--max-keepalive-reqs``: its default, 1, closes the connection after
    every answer, as a stock ``rt-server`` does.
    """

    def __init__(
        self,
        workers: int = 2,
        bcrypt_cost: int | None = None,
        keepalive_requests: int = 1,
        start_timeout: float = 90.0,
        keep: bool = False,
    ) -> None:
        self.binaries = find_binaries()
        self.workers = workers
        self.bcrypt_cost = bcrypt_cost
        self.keepalive_requests = keepalive_requests
        self.start_timeout = start_timeout
        self.keep = keep  # leave the directory behind after stop() (to read the logs)
        self.root = Path(tempfile.mkdtemp(prefix="sync-rt-"))
        self.database = self.root / "rt.db"
        self.rt_log = self.root / "rt.log"
        self.access_log = self.root / "access.log"
        self.server_output = self.root / "server.out"
        self.site_config = self.root / "RT_SiteConfig.pm"
        # Bound here, on a port the OS chooses, and handed to Starlet as an open socket (the Server::Starter
        # protocol: SERVER_STARTER_PORT=host:port=fd), so no other process can take the port in between.
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None
        self.setup_log = self.root / "setup.log"
        self._shell: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}

    # -- life cycle -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rest2_url(self) -> str:
        return f"{self.url}/REST/2.0"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["RT_SITE_CONFIG"] = str(self.site_config)
        env["RT_SITE_CONFIG_DIR"] = str(self.root / "RT_SiteConfig.d")
        env["PERL5LIB"] = os.pathsep.join(filter(None, [str(self.binaries.lib), env.get("PERL5LIB")]))
        env.setdefault("LANG", "C.UTF-8")
        return env

    def _write_site_config(self) -> None:
        for sub in ("RT_SiteConfig.d", "mason_data", "session_data", "var"):
            (self.root / sub).mkdir(exist_ok=True)

        def perl(value: object) -> str:
            return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

        bcrypt = "" if self.bcrypt_cost is None else f"Set($BcryptCost, {int(self.bcrypt_cost)});\n"
        self.site_config.write_text(
            f"""# Written by devkit/request_tracker.py for one throwaway RT.
Set($rtname, 'sync-test');
Set($Organization, 'sync-test');
Set($Timezone, 'UTC');
Set($DatabaseType, 'SQLite');
Set($DatabaseName, {perl(self.database)});
Set($WebDomain, '127.0.0.1');
Set($WebPort, {self.port});
Set($WebPath, '');
Set($WebBaseURL, {perl(self.url)});
Set($LogDir, {perl(self.root)});
Set($LogToFile, 'info');
Set($LogToFileNamed, 'rt.log');
Set($LogToSyslog, undef);
Set($LogToSTDERR, 'error');
# Never send mail: a code ref is called instead of sendmail and drops the message.
Set($MailCommand, sub {{ 1 }});
{bcrypt}Set($CorrespondAddress, 'rt\\@sync-test.invalid');
Set($CommentAddress, 'rt-comment\\@sync-test.invalid');
# Paths RT would otherwise share with every other RT on the machine (Debian's /var/cache, /var/lib).
$RT::MasonDataDir = {perl(self.root / "mason_data")};
$RT::MasonSessionDir = {perl(self.root / "session_data")};
$RT::VarPath = {perl(self.root / "var")};
1;
"""
        )

    def start(self) -> RequestTracker5:
        began = time.monotonic()
        self._write_site_config()
        setup = subprocess.run(
            [str(self.binaries.setup_database), "--action", "init", "--skip-create"],
            env=self.env(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if setup.returncode != 0:
            self.stop()
            raise RuntimeError(
                f"rt-setup-database failed ({setup.returncode}): {(setup.stdout + setup.stderr)[-3000:]}"
            )
        # Write-ahead log: the server keeps answering reads while a setup helper writes, and the other way round.
        with sqlite3.connect(self.database) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.close()
        self.timings["setup_database"] = time.monotonic() - began
        server_began = time.monotonic()
        self._spawn_server()
        error = self._wait_ready()
        if error is not None:
            output, log = self._tail(self.server_output), self._tail(self.rt_log)
            self.stop()
            raise RuntimeError(
                f"Request Tracker did not start on port {self.port}: {error}\n"
                f"--- rt-server output ---\n{output}\n--- RT's log (rt.log) ---\n{log}"
            )
        self.timings["server_ready"] = time.monotonic() - server_began
        self.timings["start"] = time.monotonic() - began
        return self

    def _spawn_server(self) -> None:
        command = [
            "perl",
            str(self.binaries.rt_server),
            "--server", "Starlet",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--max-workers", str(self.workers),
            "--max-keepalive-reqs", str(self.keepalive_requests),
            "--access-log", str(self.access_log),
        ]  # fmt: skip
        env = self.env()
        env["SERVER_STARTER_PORT"] = f"127.0.0.1:{self.port}={self._listener.fileno()}"
        with open(self.server_output, "ab") as output:
            self.process = subprocess.Popen(
                command,
                env=env,
                pass_fds=(self._listener.fileno(),),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills the workers with it
            )

    def _wait_ready(self) -> str | None:
        """None once ``GET /REST/2.0/rt`` gets an HTTP answer (401: no token) from RT proper, else why not.

        The socket listens from the start (the kernel queues the connection until a worker accepts it), so each
        try waits up to a second for the answer and then checks that rt-server is still alive.
        """
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        with httpx.Client(timeout=httpx.Timeout(1.0, connect=1.0)) as client:
            while True:
                if self.process.poll() is not None:
                    return f"rt-server exited with {self.process.returncode}"
                try:
                    client.get(f"{self.rest2_url}/rt")
                except httpx.TransportError as exc:
                    if time.monotonic() > deadline:
                        return f"no answer from GET /REST/2.0/rt within {self.start_timeout:.0f} s ({exc!r})"
                else:
                    # Without a usable database rt-server still answers, in its web installer's mode.
                    if "RT couldn't connect to the database" in self._tail(self.server_output):
                        return "rt-server could not use its database (it started RT's web installer)"
                    return None
                time.sleep(0.05)

    def _kill_server(self) -> None:
        """SIGTERM to rt-server's process group (Starlet's master stops its workers), then SIGKILL to what is left."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        self._stop_setup_shell()
        self._kill_server()
        self._listener.close()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RequestTracker5:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _tail(path: Path, size: int = 4000) -> str:
        try:
            return path.read_text(errors="replace")[-size:]
        except FileNotFoundError:
            return f"({path.name} not written)"

    def log_tail(self, size: int = 4000) -> str:
        return self._tail(self.rt_log, size)

    # -- setup through RT's Perl API --------------------------------------------------------------------------

    def perl(self, body: str, payload: Mapping[str, Any] | None = None) -> Any:
        """Runs ``body`` (Perl, RT initialised, ``$input`` = ``payload``) in the setup process; returns ``$result``.

        ``fail("why")`` (or any ``die``) rolls back an open transaction and raises :class:`RuntimeError` here.
        """
        shell = self._setup_shell()
        assert shell.stdin is not None and shell.stdout is not None
        request = json.dumps({"body": body, "input": payload or {}}) + "\n"
        try:
            shell.stdin.write(request.encode())
            shell.stdin.flush()
        except BrokenPipeError:
            pass  # reported below, with perl's output
        while True:
            line = shell.stdout.readline()
            if not line:
                shell.wait(10)
                raise RuntimeError(
                    f"RT's perl setup process exited ({shell.returncode}): {self._tail(self.setup_log)}"
                )
            if line.startswith(b"__RESULT__"):
                answer = json.loads(line[len(b"__RESULT__") :])
                if answer["error"] is not None:
                    raise RuntimeError(f"RT setup failed: {answer['error'].strip()}")
                return answer["result"]

    def _setup_shell(self) -> subprocess.Popen[bytes]:
        if self._shell is None or self._shell.poll() is not None:
            with open(self.setup_log, "ab") as log:
                self._shell = subprocess.Popen(
                    ["perl", "-e", _PERL_SHELL],
                    env=self.env(),
                    cwd=self.root,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                )
        return self._shell

    def _stop_setup_shell(self) -> None:
        shell, self._shell = self._shell, None
        if shell is None:
            return
        try:
            assert shell.stdin is not None
            shell.stdin.close()
            shell.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            shell.kill()
            shell.wait()
        if shell.stdout is not None:
            shell.stdout.close()

    def create_user_fields(self, *fields: str | UserField) -> dict[str, int]:
        """Creates user custom fields (a plain name: applied to all users); returns ``{name: custom field id}``."""
        specs = [field if isinstance(field, UserField) else UserField(field) for field in fields]
        payload = {
            "fields": [
                {
                    "name": spec.name,
                    "applied": spec.applied,
                    "disabled": spec.disabled,
                    "pattern": spec.pattern,
                    "description": spec.description,
                    "type": spec.type,
                    "max_values": spec.max_values,
                    "values": list(spec.values),
                }
                for spec in specs
            ]
        }
        return self.perl(_PERL_CREATE_USER_FIELDS, payload)

    def change_user_field(
        self,
        name: str,
        type: str | None = None,
        max_values: int | None = None,
        values: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Changes a user custom field as an admin would: its type, its MaxValues, ``values`` added to its list.
        What users hold stays (a Freeform value a Select would not list included). Returns the new type and
        MaxValues."""
        payload = {"name": name, "type": type, "max_values": max_values, "values": list(values)}
        return self.perl(_PERL_CHANGE_USER_FIELD, payload)

    def create_users(
        self,
        users: Sequence[tuple[str, str, Mapping[str, str]]],
        privileged: bool = False,
    ) -> list[int]:
        """Creates ``(name, email, {field: value})`` users in one transaction; returns their ids, in order.

        A value may be given for any user custom field, applied to users or not, enabled or not (as left-over data).
        """
        payload = {
            "users": [[name, email, dict(values)] for name, email, values in users],
            "privileged": privileged,
        }
        return self.perl(_PERL_CREATE_USERS, payload)

    def create_token(
        self,
        user_name: str = "sync-bot",
        rights: Sequence[str] = DEFAULT_RIGHTS,
        privileged: bool = True,
        description: str = "sync_pipelines tests",
    ) -> str:
        """An auth token (``Authorization: token <it>``) for ``user_name``, created when missing, privileged (REST2
        lists users to privileged users only) and granted ``rights`` on the whole system."""
        payload = {
            "name": user_name,
            "rights": list(rights),
            "privileged": privileged,
            "description": description,
        }
        return self.perl(_PERL_CREATE_TOKEN, payload)["token"]

    # -- reading back ----------------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        connection = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)
        return connection

    def user_fields(self, ids: Iterable[int] | None = None) -> dict[int, dict[str, str]]:
        """``{user id: {field name: current value}}`` from RT's database (every asked-for id present)."""
        wanted = None if ids is None else sorted(set(ids))
        query = (
            "SELECT v.ObjectId, c.Name, COALESCE(v.LargeContent, v.Content) FROM ObjectCustomFieldValues v "
            "JOIN CustomFields c ON c.id = v.CustomField "
            "WHERE v.ObjectType = 'RT::User' AND v.Disabled = 0 ORDER BY v.id"
        )
        result: dict[int, dict[str, str]] = {user_id: {} for user_id in wanted or ()}
        with self._db() as connection:
            rows = connection.execute(query).fetchall()
        connection.close()
        for user_id, name, value in rows:
            if wanted is None or user_id in result:
                value = value.decode() if isinstance(value, bytes) else value
                result.setdefault(user_id, {})[name] = value
        return result

    def user_ids(self, names: Iterable[str]) -> dict[str, int]:
        names = list(names)
        with self._db() as connection:
            rows = connection.execute(
                f"SELECT Name, id FROM Users WHERE Name IN ({','.join('?' * len(names))})", names
            ).fetchall()
        connection.close()
        return dict(rows)

    def access_log_entries(self) -> list[AccessLogEntry]:
        try:
            lines = self.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            match = _ACCESS_LINE.search(line)
            if match:
                entries.append(AccessLogEntry(match["method"], match["target"], int(match["status"])))
        return entries

    def access_log_requests(self, query: bool = False) -> Counter[tuple[str, str]]:
        """How many requests RT answered, by ``(method, path)`` (with the query string when ``query``)."""
        return Counter((e.method, e.target if query else e.path) for e in self.access_log_entries())
