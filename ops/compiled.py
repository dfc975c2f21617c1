"""Hot queries compiled to SQL once per process, then run with new values.

Django compiles a queryset to SQL each time it is evaluated. For the few small queries that every
API call (the token, the membership, the project) or every delivery (the claimed executions and
all they refer to) runs, compiling cost more CPU than the database spent answering: py-spy put
`SQLCompiler.as_sql` at 71 % of the worker's ORM time and a third of an API call (issue 9).
"""

import threading

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.query import get_related_populators


def insert(obj):
    """Write the new model instance `obj` (a model with no parent) with one INSERT … RETURNING id,
    its text built once per model: what `obj.save(force_insert=True)` writes, without compiling
    the statement again for each row and without the save signals (a caller whose receivers
    must hear of it sends post_save itself). Compiling each event's insert was most of what
    recording it cost: two events per artifact POST. Where the database cannot return the id,
    Django's own insert (still no signals). Returns `obj`, its primary key set."""
    connection = connections[DEFAULT_DB_ALIAS]
    model = type(obj)
    if model not in _inserts:
        quote, meta = connection.ops.quote_name, model._meta
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        _inserts[model] = (fields, f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
                                   f" VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {quote(meta.pk.column)}")
    fields, sql = _inserts[model]
    obj._prepare_related_fields_for_save(operation_name="insert")  # as save(): an unsaved related object is refused, not written as NULL
    if connection.features.can_return_columns_from_insert:
        with prepared_cursor() as cursor:
            cursor.execute(sql, [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields])
            obj.pk = cursor.fetchone()[0]
    else:
        obj.pk = model._base_manager._insert([obj], fields=fields, returning_fields=[model._meta.pk], using=DEFAULT_DB_ALIAS)[0][0]
    obj._state.adding, obj._state.db = False, DEFAULT_DB_ALIAS
    return obj


_inserts = {}  # {model: (fields, the INSERT statement)}


def prepared_cursor():
    """A cursor whose statements are prepared where the backend can (config/postgresql): each
    planned once per connection. For queries whose text repeats: a hot query, or one whose text
    changes only with the number of its parts."""
    connection = connections[DEFAULT_DB_ALIAS]
    return getattr(connection, "prepared_cursor", connection.cursor)()


class Compiled:
    """`Compiled(build)(*values)`: the model instances of `build(*values)`, a queryset on the
    default database whose SQL depends on nothing but `values` — strings or integers, each
    reaching the database unchanged as a parameter (an equality lookup on a text or integer
    column). The first call compiles it, and checks it: compiled again with other values, it
    must differ in those parameters only."""

    def __init__(self, build):
        self.build = build
        self.compiled = None
        self.lock = threading.Lock()

    def __call__(self, *values):
        if self.compiled is None:
            with self.lock:
                self.compiled = self.compiled or self.compile(values)
        sql, params, slots, instances = self.compiled
        params = list(params)
        for position, index in slots:
            params[position] = values[index]
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        return instances(rows)

    def compile(self, values):
        """Compiled from two sets of made-up values, all different from each other (never from
        the values given: two of them equal — a run named as its project — would make the slot
        of each a guess, and the guess would hold for every later call)."""
        if any(isinstance(v, bool) or not isinstance(v, (int, str)) for v in values):
            raise TypeError("Compiled queries take strings and integers")
        probes = [[-(2 * i + k + 2) if isinstance(v, int) else f"\x01{k}.{i}" for i, v in enumerate(values)] for k in (0, 1)]
        compiler = self.build(*probes[0]).query.get_compiler(using=DEFAULT_DB_ALIAS)
        sql, params = compiler.as_sql()
        sql_other, params_other = self.build(*probes[1]).query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
        index = {probe: i for i, probe in enumerate(probes[0])}
        changed = [position for position, (a, b) in enumerate(zip(params, params_other)) if a != b]
        slots = [(position, index[params[position]]) for position in changed if params[position] in index]
        if sql != sql_other or len(params) != len(params_other) or len(slots) != len(changed) \
                or any(params_other[p] != probes[1][i] for p, i in slots):
            raise ValueError(f"{self.build!r}: its SQL depends on more than the values given, unchanged")
        return sql, tuple(params), slots, Instances(compiler)


class Instances:
    """What Django's ModelIterable makes of a compiled query's rows, worked out once: where each
    model's columns are, the populators of the related models, and the columns' converters.
    ModelIterable works them out again for every query it runs: asking each of a row's columns
    for its converters was a tenth of the worker's Python per event (cProfile, evaluate_pending)."""

    def __init__(self, compiler):
        select, klass_info = compiler.select, compiler.klass_info
        self.model, fields = klass_info["model"], klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [f[0].target.attname for f in select[self.start:self.end]]
        self.populators = get_related_populators(klass_info, select, DEFAULT_DB_ALIAS)
        columns = [s[0] for s in select[:compiler.col_count]]
        if compiler.has_composite_fields(columns):
            raise ValueError("Compiled queries read no composite primary key")
        self.converters = list(compiler.get_converters(columns).items())
        self.connection = compiler.connection

    def __call__(self, rows):
        model, start, end, init_list, populators = self.model, self.start, self.end, self.init_list, self.populators
        converters, connection = self.converters, self.connection
        out = []
        for row in rows:
            if converters:
                row = list(row)
                for position, (convert, expression) in converters:
                    value = row[position]
                    for converter in convert:
                        value = converter(value, expression, connection)
                    row[position] = value
            obj = model.from_db(DEFAULT_DB_ALIAS, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            out.append(obj)
        return out
