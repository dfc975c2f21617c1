"""Hot queries compiled to SQL once per process, then run with new values.

Django compiles a queryset to SQL each time it is evaluated. For the few small queries that every
API call (the token, the membership, the project) or every delivery (the claimed executions and
all they refer to) runs, compiling cost more CPU than the database spent answering: py-spy put
`SQLCompiler.as_sql` at 71 % of the worker's ORM time and a third of an API call (issue 9).
"""

import threading

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.query import get_related_populators


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
        compiler, sql, params, slots = self.compiled
        params = list(params)
        for position, index in slots:
            params[position] = values[index]
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        return self.instances(compiler, rows)

    def compile(self, values):
        if any(isinstance(v, bool) or not isinstance(v, (int, str)) for v in values):
            raise TypeError("Compiled queries take strings and integers")
        other = [v + 1 if isinstance(v, int) else f"{v}\x01" for v in values]
        compiler = self.build(*values).query.get_compiler(using=DEFAULT_DB_ALIAS)
        sql, params = compiler.as_sql()
        sql_other, params_other = self.build(*other).query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
        changed = [position for position, (a, b) in enumerate(zip(params, params_other)) if a != b]
        slots = [(position, values.index(params[position])) for position in changed if params[position] in values]
        if sql != sql_other or len(params) != len(params_other) or len(slots) != len(changed) \
                or any(params_other[p] != other[i] for p, i in slots):
            raise ValueError(f"{self.build!r}: its SQL depends on more than the values given, unchanged")
        return compiler, sql, tuple(params), slots

    @staticmethod
    def instances(compiler, rows):
        """What Django's ModelIterable makes of `rows`, with the compiler it compiled once."""
        select, klass_info = compiler.select, compiler.klass_info
        model, fields = klass_info["model"], klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        init_list = [f[0].target.attname for f in select[start:end]]
        db = DEFAULT_DB_ALIAS
        populators = get_related_populators(klass_info, select, db)
        out = []
        for row in compiler.results_iter([rows]):
            obj = model.from_db(db, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            out.append(obj)
        return out
