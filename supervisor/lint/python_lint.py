#!/usr/bin/env python3
"""Python half of `duckvisorctl lint`: checks extraction scripts with Python's own `ast` module.

Stdlib only. Reads one JSON request on stdin:
    {"files": ["a.py", ...], "config": {"extractionSources": [...], "progressCalls": [...],
                                         "progressMarkers": [...], "bulkWriteCalls": [...]}}
and writes one JSON answer on stdout:
    {"files": [{"file": "a.py", "findings": [{"line", "column", "rule", "message"}],
                "parseError": null | {"line", "column", "message"}}]}
Lines and columns are 1-based. Suppression comments are applied by the caller (Node), not here.
The rules mirror supervisor/lint/ts_*.ts; docs/lint.md describes them.
"""

import ast
import json
import re
import sys

LOOP_TYPES = (ast.For, ast.AsyncFor, ast.While)
SCOPE_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
EMPTY_COLLECTION_CALLS = {"list", "dict", "defaultdict", "OrderedDict", "deque", "DataFrame", "Counter"}
GROWTH_METHODS = {"append", "extend", "insert", "appendleft", "extendleft", "update", "setdefault"}
RESET_METHODS = {"clear"}
FILE_LISTINGS = {"listdir", "scandir", "walk", "glob", "iglob", "rglob", "iterdir"}
ARTIFACT_READERS = {"read_text", "read_bytes", "read_csv", "read_parquet", "read_json", "read_table", "load"}
CHEAP_QUERY = re.compile(
    r"\blimit\s+\d+|^\s*select\s+(count|sum|min|max|avg|coalesce\s*\(\s*sum)\s*\((?![^;]*\bgroup\s+by\b)"
    r"|sqlite_master|information_schema|^\s*pragma\b|duckdb_\w+\s*\(",
    re.IGNORECASE,
)


def normalize(name):
    return name.lower().replace("_", "")


class CallMatcher:
    """Same semantics as supervisor/lint/patterns.ts: `name` or `receiver.name`, `*` wildcards."""

    def __init__(self, patterns):
        self.compiled = []
        for pattern in patterns:
            receiver, _, name = pattern.rpartition(".")
            self.compiled.append((self._segment(receiver) if receiver else None, self._segment(name)))

    @staticmethod
    def _segment(segment):
        parts = [re.escape(part) for part in normalize(segment).split("*")]
        return re.compile("^" + ".*".join(parts) + "$")

    def matches(self, name, receiver):
        if name is None:
            return False
        n = normalize(name)
        r = normalize(receiver) if receiver is not None else None
        for rec, nam in self.compiled:
            if nam.match(n) and (rec is None or (r is not None and rec.match(r))):
                return True
        return False


def call_name(call):
    """(name, receiver-last-segment) of a call: `a.b.c(...)` -> ('c', 'b'); `f(...)` -> ('f', None)."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id, None
    if isinstance(func, ast.Attribute):
        value = func.value
        if isinstance(value, ast.Name):
            return func.attr, value.id
        if isinstance(value, ast.Attribute):
            return func.attr, value.attr
        if isinstance(value, ast.Call):
            inner, _ = call_name(value)
            return func.attr, inner
        return func.attr, ""
    return None, None


def receiver_name(call):
    """The plain variable a method is called on: `rows.append(x)` -> 'rows'."""
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id
    return None


def names_in(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def string_constants(node):
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            yield n.value


def source_text(node):
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover - unparse is total on parsed trees
        return ""


def is_empty_collection(node):
    if isinstance(node, ast.List) and not node.elts:
        return True
    if isinstance(node, ast.Dict) and not node.keys:
        return True
    if isinstance(node, ast.Call):
        name, _ = call_name(node)
        if name in EMPTY_COLLECTION_CALLS and not node.args:
            # a deque with maxlen is bounded by construction
            return not (name == "deque" and any(k.arg == "maxlen" for k in node.keywords))
        if name in ("defaultdict",) and len(node.args) <= 1:
            return True
    return False


def is_literal_iterable(node):
    """Loops over a literal list/tuple/set/dict or range(<constants>) have a fixed, visible size."""
    if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
        return True
    if isinstance(node, ast.Call):
        name, _ = call_name(node)
        if name == "range" and all(isinstance(a, ast.Constant) for a in node.args):
            return True
        if name in ("enumerate", "zip", "sorted", "reversed") and node.args:
            return all(is_literal_iterable(a) for a in node.args)
    return False


class Event:
    __slots__ = ("kind", "name", "node", "loops")

    def __init__(self, kind, name, node, loops):
        self.kind = kind
        self.name = name
        self.node = node
        self.loops = loops


def pos(node):
    return (node.lineno, node.col_offset)


def inside(node, loop):
    return pos(loop) <= pos(node) and (node.lineno, node.col_offset) <= (loop.end_lineno, loop.end_col_offset)


class ScopeCollector:
    """Walks one function (or the module) body, recording collection events with their loop stack."""

    def __init__(self, scope):
        self.scope = scope
        self.events = []
        self.loops = []  # every loop in this scope, in source order
        self.nested_scopes = []

    def run(self, body):
        for stmt in body:
            self.visit(stmt, ())

    def visit(self, node, loops):
        if isinstance(node, SCOPE_TYPES):
            self.nested_scopes.append(node)
            return
        if isinstance(node, LOOP_TYPES):
            self.loops.append(node)
            head = [node.iter, node.target] if isinstance(node, (ast.For, ast.AsyncFor)) else [node.test]
            for part in head:
                self.visit(part, loops)
            inner = loops + (node,)
            for stmt in node.body:
                self.visit(stmt, inner)
            for stmt in node.orelse:
                self.visit(stmt, loops)
            return
        self.record(node, loops)
        for child in ast.iter_child_nodes(node):
            self.visit(child, loops)

    def add(self, kind, name, node, loops):
        self.events.append(Event(kind, name, node, loops))

    def record(self, node, loops):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if value is None:
                return
            for target in targets:
                if isinstance(target, ast.Name):
                    name = target.id
                    if is_empty_collection(value):
                        self.add("create", name, node, loops)
                    elif self.is_self_growth(name, value):
                        self.add("grow", name, node, loops)
                    elif name not in names_in(value):
                        self.add("rebind", name, node, loops)
                elif isinstance(target, ast.Subscript):
                    base = target.value
                    if isinstance(base, ast.Name):
                        if isinstance(target.slice, ast.Slice) and isinstance(value, ast.List) and not value.elts:
                            self.add("reset", base.id, node, loops)
                        elif not self.is_keyed_aggregate(base.id, value):
                            self.add("grow", base.id, node, loops)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            if isinstance(node.op, (ast.Add, ast.BitOr)):
                self.add("augment", node.target.id, node, loops)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and isinstance(target.slice, ast.Slice):
                    self.add("reset", target.value.id, node, loops)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            base = node.func.value
            if isinstance(base, ast.Name):
                if method in GROWTH_METHODS:
                    self.add("grow", base.id, node, loops)
                elif method in RESET_METHODS:
                    self.add("reset", base.id, node, loops)
            elif method in GROWTH_METHODS:
                # rows[k].append(x), rows.setdefault(k, []).append(x): grows the outer collection
                root = base
                while isinstance(root, (ast.Subscript, ast.Call, ast.Attribute)):
                    if isinstance(root, ast.Call):
                        root = root.func
                    root = root.value
                if isinstance(root, ast.Name):
                    self.add("grow", root.id, node, loops)

    @staticmethod
    def is_keyed_aggregate(name, value):
        """`totals[k] = totals.get(k, 0) + v` / `totals[k] = totals[k] + v`: bounded by distinct keys."""
        for inner in ast.walk(value):
            if isinstance(inner, ast.Subscript) and isinstance(inner.value, ast.Name) and inner.value.id == name:
                return True
            if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and inner.func.attr == "get" \
                    and isinstance(inner.func.value, ast.Name) and inner.func.value.id == name:
                return True
        return False

    @staticmethod
    def is_self_growth(name, value):
        """`rows = rows + [x]`, `df = pd.concat([df, new])`, `rows = [*rows, x]`, `d = {**d, k: v}`."""
        if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.BitOr)):
            return name in names_in(value)
        if isinstance(value, ast.Call):
            called, _ = call_name(value)
            if called in ("concat", "append", "union") and name in names_in(value):
                return True
        if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.Tuple)) and name in names_in(value):
            return True
        return False


class FileLinter:
    def __init__(self, tree, config):
        self.tree = tree
        self.sources = CallMatcher(config.get("extractionSources", []))
        self.progress = CallMatcher(config.get("progressCalls", []))
        self.markers = config.get("progressMarkers", [])
        self.writes = CallMatcher(config.get("bulkWriteCalls", []))
        self.findings = []
        self.progress_functions = self.find_progress_functions()
        self.source_names = self.find_source_names()
        self.covered_functions = self.find_covered_functions()

    def report(self, node, rule, message, cause=None):
        finding = {"line": node.lineno, "column": node.col_offset + 1, "rule": rule, "message": message}
        if cause is not None:
            finding["cause"] = {"line": cause.lineno, "rule": "unbounded-accumulation"}
        self.findings.append(finding)

    # ---- progress ---------------------------------------------------------------------------

    def is_progress_call(self, call, extra_names=frozenset()):
        name, receiver = call_name(call)
        if name is None:
            return False
        if self.progress.matches(name, receiver) or name in extra_names:
            return True
        for text in string_constants(call):
            if any(marker in text for marker in self.markers):
                return True
        return False

    def contains_progress(self, node, extra_names=None):
        names = self.progress_functions if extra_names is None else extra_names
        return any(isinstance(n, ast.Call) and self.is_progress_call(n, names) for n in ast.walk(node))

    def find_covered_functions(self):
        """Local functions called from a loop that reports progress: their own loops are covered by it."""
        covered = set()
        for loop in ast.walk(self.tree):
            if isinstance(loop, LOOP_TYPES) and any(self.contains_progress(s) for s in loop.body):
                for node in ast.walk(loop):
                    if isinstance(node, ast.Call):
                        name, _ = call_name(node)
                        if name is not None:
                            covered.add(name)
        return frozenset(covered)

    def find_progress_functions(self):
        """Functions/methods in this file whose bodies report progress count as progress calls."""
        functions = [n for n in ast.walk(self.tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        found = set()
        changed = True
        while changed:
            changed = False
            for fn in functions:
                if fn.name not in found and self.contains_progress(fn, frozenset(found)):
                    found.add(fn.name)
                    changed = True
        return frozenset(found)

    # ---- entry ------------------------------------------------------------------------------

    def run(self):
        pending = [self.tree]
        while pending:
            scope = pending.pop()
            body = scope.body if isinstance(scope.body, list) else [ast.Expr(scope.body)]
            collector = ScopeCollector(scope)
            collector.run(body)
            self.check_accumulation(collector)
            self.check_progress(collector)
            pending.extend(collector.nested_scopes)
        self.check_materialize()
        self.findings.sort(key=lambda f: (f["line"], f["column"], f["rule"]))
        return self.findings

    # ---- unbounded-accumulation + bulk-write-after-loop --------------------------------------

    def check_accumulation(self, collector):
        events = sorted(collector.events, key=lambda e: pos(e.node))
        creations = [e for e in events if e.kind == "create"]
        reported = set()
        for event in events:
            if event.kind not in ("grow", "augment"):
                continue
            creation = None
            for c in creations:
                if c.name == event.name and pos(c.node) < pos(event.node):
                    creation = c
            if creation is None:
                continue
            growth_loops = [
                loop for loop in event.loops
                if loop not in creation.loops
                and not (isinstance(loop, (ast.For, ast.AsyncFor)) and is_literal_iterable(loop.iter))
            ]
            if not growth_loops:
                continue
            innermost = growth_loops[-1]
            outermost = growth_loops[0]
            key = (creation.node, outermost)
            if key in reported:
                continue
            resets = [
                e for e in events
                if e.name == event.name and e.kind in ("reset", "create", "rebind") and e is not creation
            ]
            if any(innermost in r.loops for r in resets):
                continue  # cleared inside the loop: a bounded batch
            later = [r for r in resets if r.node.lineno > innermost.end_lineno]
            write = self.find_bulk_write(collector.scope, event.name, innermost, later[0] if later else None)
            extraction = any(self.loop_source(loop, self.source_names) is not None for loop in growth_loops)
            if not extraction and write is None:
                continue  # an in-memory computation (building a SQL clause list, ...), not an extraction loop
            reported.add(key)
            if later:
                fate = "only cleared after the loop (line %d)" % later[0].node.lineno
            else:
                fate = "never cleared"
            kind = "loop at line %d" % innermost.lineno
            self.report(
                event.node, "unbounded-accumulation",
                "`%s` (created at line %d) grows inside the %s and is %s; flush and clear it when it "
                "reaches a size threshold inside the loop" % (event.name, creation.node.lineno, kind, fate),
            )
            if write is not None:
                self.report(
                    write, "bulk-write-after-loop",
                    "writes `%s`, accumulated by the loop at line %d, in one go after the loop; write in "
                    "bounded batches inside the loop instead" % (event.name, innermost.lineno),
                    event.node,
                )

    def find_bulk_write(self, scope, name, loop, stop):
        """The first call after `loop` that writes `name` (or something derived from it) in one go."""
        derived = {name}
        stop_pos = pos(stop.node) if stop is not None else None
        after = []
        for node in ast.walk(scope):
            if hasattr(node, "lineno") and node.lineno > loop.end_lineno:
                if stop_pos is not None and pos(node) > stop_pos:
                    continue
                after.append(node)
        after.sort(key=pos)
        for node in after:
            if isinstance(node, ast.Assign) and names_in(node.value) & derived:
                derived.update(t.id for t in node.targets if isinstance(t, ast.Name))
        for node in after:
            if not isinstance(node, ast.Call):
                continue
            called, receiver = call_name(node)
            if called is None or called in GROWTH_METHODS and receiver_name(node) in derived:
                continue
            arg_names = set()
            for arg in list(node.args) + [k.value for k in node.keywords]:
                arg_names |= names_in(arg)
            receiver_var = receiver_name(node)
            writes_arg = self.writes.matches(called, receiver) and bool(arg_names & derived)
            writes_self = receiver_var in derived and called in ("to_sql", "to_parquet", "to_csv", "write_parquet", "write_csv")
            sql_scan = (
                called in ("execute", "sql", "query")
                and any(re.search(r"\b(insert|create\s+table|copy)\b", s, re.I) and any(re.search(r"\b%s\b" % re.escape(d), s) for d in derived)
                        for s in string_constants(node))
            )
            if writes_arg or writes_self or sql_scan:
                return node
        return None

    # ---- no-progress-in-loop ------------------------------------------------------------------

    def is_source_call(self, node):
        if not isinstance(node, ast.Call):
            return False
        name, receiver = call_name(node)
        return name is not None and self.sources.matches(name, receiver)

    def find_source_names(self):
        """Variables bound to an extraction source: `runs = client.search_runs(...)`, `with ... as cur`."""
        source_names = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and any(self.is_source_call(n) for n in ast.walk(node.value)):
                source_names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            if isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if isinstance(item.optional_vars, ast.Name) and any(self.is_source_call(n) for n in ast.walk(item.context_expr)):
                        source_names.add(item.optional_vars.id)
        return source_names

    def check_progress(self, collector):
        scope = collector.scope
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)) and scope.name in self.covered_functions:
            return
        reported = []
        for loop in collector.loops:
            source = self.loop_source(loop, self.source_names)
            if source is None:
                continue
            if any(inside(loop, outer) for outer in reported):
                continue  # one finding per nest: the enclosing source loop is already reported
            if self.contains_progress(loop):
                continue
            if any(
                other is not loop and inside(loop, other) and any(self.contains_progress(s) for s in other.body)
                for other in collector.loops
            ):
                continue
            reported.append(loop)
            self.report(
                loop, "no-progress-in-loop",
                "loop over `%s` reports no progress; call ctx.progress()/a heartbeat inside it so a stall "
                "is visible" % source,
            )

    def loop_source(self, loop, source_names):
        if isinstance(loop, (ast.For, ast.AsyncFor)):
            for node in ast.walk(loop.iter):
                if self.is_source_call(node):
                    return source_text(node.func) + "(...)"
                if isinstance(node, ast.Name) and node.id in source_names:
                    return node.id
            return None
        for node in ast.walk(loop.test):
            if self.is_source_call(node):
                return source_text(node.func) + "(...)"
        for node in self.walk_shallow(loop.body):
            if self.is_source_call(node):
                return source_text(node.func) + "(...)"
        return None

    @staticmethod
    def walk_shallow(body):
        stack = list(body)
        while stack:
            node = stack.pop()
            yield node
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, LOOP_TYPES + SCOPE_TYPES):
                    stack.append(child)

    # ---- materialize-all ----------------------------------------------------------------------

    def check_materialize(self):
        artifact_loops = []
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.For, ast.AsyncFor)) and "artifact" in source_text(node.iter).lower():
                artifact_loops.append(node)
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            name, receiver = call_name(node)
            if name is None:
                continue
            kwargs = {k.arg for k in node.keywords}
            if name == "search_runs" and (receiver in (None, "mlflow")) and not kwargs & {"max_results", "page_token"}:
                self.report(node, "materialize-all",
                            "search_runs without max_results/page_token loads every run into one DataFrame; "
                            "page with MlflowClient.search_runs(max_results=..., page_token=...)")
            elif name in ("fetchall", "fetch_df", "fetchdf") and not self.cheap_query(node):
                self.report(node, "materialize-all",
                            "%s() loads the whole result into memory; iterate the cursor or use fetchmany(n)" % name)
            elif name in ("read_sql", "read_sql_query", "read_sql_table") and "chunksize" not in kwargs and not self.cheap_strings(node):
                self.report(node, "materialize-all",
                            "%s() without chunksize loads the whole result; pass chunksize=N and stream" % name)
            elif name == "list" and len(node.args) == 1 and isinstance(node.args[0], ast.Call) \
                    and self.is_source_call(node.args[0]) and call_name(node.args[0])[0] not in FILE_LISTINGS:
                self.report(node, "materialize-all",
                            "list(%s(...)) materializes an extraction source; iterate it instead" % call_name(node.args[0])[0])
            elif self.is_artifact_read(node, name, receiver, kwargs, artifact_loops):
                self.report(node, "materialize-all",
                            "reads a whole artifact into memory; stream it (open + iterate lines/chunks, "
                            "chunksize=..., pyarrow iter_batches)")

    def is_artifact_read(self, node, name, receiver, kwargs, artifact_loops):
        whole_read = (
            name in ARTIFACT_READERS and "chunksize" not in kwargs
            and (name != "load" or receiver in ("json", "pickle", "np", "numpy", "yaml"))
        ) or (name == "read" and not node.args and not node.keywords)
        if not whole_read:
            return False
        if "artifact" in source_text(node).lower():
            return True
        return any(inside(node, loop) for loop in artifact_loops)

    def cheap_query(self, call):
        """fetchall() on `execute("SELECT COUNT(*) ...")`, `... LIMIT 10` or catalog queries is fine."""
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call):
            return self.cheap_strings(func.value)
        return False

    @staticmethod
    def cheap_strings(node):
        return any(CHEAP_QUERY.search(s) for s in string_constants(node))


def lint_file(path, config):
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as error:
        return {"file": path, "findings": [], "parseError": {"line": 1, "column": 1, "message": "cannot read: %s" % error}}
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as error:
        return {
            "file": path, "findings": [],
            "parseError": {"line": error.lineno or 1, "column": error.offset or 1, "message": "SyntaxError: %s" % error.msg},
        }
    except ValueError as error:  # e.g. source with NUL bytes
        return {"file": path, "findings": [], "parseError": {"line": 1, "column": 1, "message": str(error)}}
    return {"file": path, "findings": FileLinter(tree, config).run(), "parseError": None}


def main():
    request = json.load(sys.stdin)
    config = request.get("config", {})
    answer = {"files": [lint_file(path, config) for path in request.get("files", [])]}
    json.dump(answer, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
