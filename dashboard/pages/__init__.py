"""Pages of the web app, one file each; Dash imports every file here that calls register_page.

A page file:
- registers itself: ``dash.register_page(__name__, path="/incidents", name=N_("Incidents"),
  order=20, roles=["commander", "leader"])`` — ``name`` is an English msgid marked with
  ``N_`` (the navigation translates it), ``roles`` limits who sees and may open it (omit it
  for everyone);
- has a ``layout(**query)`` FUNCTION that reads the user and the store at request time
  (``dashboard.context.current_scope()``, ``current_store()``), never data at import time;
- wires its callbacks in ``register_callbacks(app)`` with ``app.callback`` (not the global
  ``dash.callback``, which would bind them to the first app created in the process);
- keeps component ids in an ``ids`` namespace class;
- re-checks every code the browser sends against the user's scope (scoped ``core`` reads);
- defines no dataclasses: Dash executes page files before putting them in ``sys.modules``,
  which ``@dataclass`` needs — put such types in a module of ``dashboard`` (e.g. ``focus.py``).

Files starting with ``_`` (like this one) are not pages.
"""
