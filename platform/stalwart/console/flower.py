"""The seam with Flower: Flower 2.x's own app and command, with Stalwart's pages added.

``stalwart flower`` runs Flower's own ``flower`` command (so every Flower option and ``FLOWER_*``
variable works as with ``celery flower``: basic auth, OAuth, URL prefix, TLS), with the app
class it builds replaced by a subclass that adds Stalwart's routes before Flower's catch-all and
Stalwart's items to Flower's navigation. What this relies on, each checked by :func:`check`
before anything starts (and pinned by tests/unit/test_console_flower.py), is listed in
:data:`REQUIRED`; when Flower moves any of it, ``stalwart flower`` stops at start with one line
naming the supported range instead of serving a blank page.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tornado import template

from stalwart.errors import StalwartError

SUPPORTED = (2, 3)  # Flower >= 2.0, < 3
SUPPORTED_TEXT = "Flower >=2.0,<3"
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
NAV_OPEN = '<ul class="app-nav navbar-nav">'
NAV_CLOSE = "</ul>"
BASE_BLOCKS = ("{% block title %}", "{% block navbar %}", "{% block container %}", "{% block extra_scripts %}")
PREFIX = "stalwart/"  # template names under it are Stalwart's

# (module, attribute): what Stalwart uses of Flower, and why.
REQUIRED = (
    ("flower.command", "flower"),  # Flower's own click command: its options, environment and start-up
    ("flower.command", "Flower"),  # the app class that command builds: replaced by our subclass for the run
    ("flower.app", "Flower"),  # subclassed: Stalwart's routes and template loader added
    ("flower.app", "rewrite_handler"),  # Flower's --url_prefix rewriting, applied to our routes too
    ("flower.views", "BaseHandler"),  # auth (basic and OAuth), rendering, error pages
    ("flower.api", "BaseApiHandler"),  # the API's auth rule (no unauthenticated API by default)
    ("flower.urls", "settings"),  # template_path: base.html and navbar.html that our pages extend
)
NAV = (  # (active tab, label, route name)
    ("stalwart-dead-letters", "Dead letters", "stalwart-dead-letters"),
    ("stalwart-causes", "Causes", "stalwart-causes"),
    ("stalwart-breakers", "Breakers", "stalwart-breakers"),
    ("stalwart-limits", "Limits", "stalwart-limits"),
    ("stalwart-switches", "Switches", "stalwart-switches"),
    ("stalwart-queues", "Queues", "stalwart-queues"),
    ("stalwart-audit", "Audit", "stalwart-audit"),
)


class FlowerUnsupported(StalwartError):
    """The installed Flower is not one Stalwart's console supports."""


def flower_version() -> str:
    try:
        return importlib.metadata.version("flower")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _version_ok(version: str) -> bool:
    try:
        major = int(version.split(".", maxsplit=1)[0])
    except ValueError:
        return False
    return SUPPORTED[0] <= major < SUPPORTED[1]


def problems() -> list[str]:
    """What is missing from the installed Flower (empty when it is supported)."""
    version = flower_version()
    found = [] if _version_ok(version) else [f"version {version} is outside the range"]
    for module_name, attribute in REQUIRED:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            found.append(f"{module_name} does not import ({exc})")
            continue
        if not hasattr(module, attribute):
            found.append(f"{module_name}.{attribute} is gone")
    if not found:
        found += _template_problems(Path(importlib.import_module("flower.urls").settings["template_path"]))
    return found


def _template_problems(directory: Path) -> list[str]:
    found = []
    try:
        base = (directory / "base.html").read_text(encoding="utf-8")
        navbar = (directory / "navbar.html").read_text(encoding="utf-8")
    except OSError as exc:
        return [f"Flower's templates are not where expected ({exc})"]
    found += [f"base.html lacks {block}" for block in BASE_BLOCKS if block not in base]
    if NAV_OPEN not in navbar or NAV_CLOSE not in navbar.split(NAV_OPEN, 1)[-1]:
        found.append(f"navbar.html lacks its primary navigation list ({NAV_OPEN})")
    return found


def check() -> None:
    """Raise :class:`FlowerUnsupported` (one line) unless the installed Flower is supported."""
    found = problems()
    if found:
        raise FlowerUnsupported(
            f"stalwart flower supports {SUPPORTED_TEXT}; the installed Flower ({flower_version()}) "
            f"does not fit: {'; '.join(found)}"
        )


def nav_items() -> str:
    """Stalwart's navigation items, in the markup of Flower's own."""
    items = []
    for tab, label, route in NAV:
        items.append(
            f'<li class="nav-item"><a class="nav-link{{% if active_tab == "{tab}" %}} active{{% end %}}" '
            f'href="{{{{ reverse_url("{route}") }}}}" '
            f'{{% if active_tab == "{tab}" %}}aria-current="page"{{% end %}}>{label}</a></li>'
        )
    return "\n".join(items)


def add_nav(navbar: str) -> str:
    """Flower's navbar with Stalwart's items at the end of its primary list."""
    head, _, rest = navbar.partition(NAV_OPEN)
    inner, _, tail = rest.partition(NAV_CLOSE)
    return f"{head}{NAV_OPEN}{inner}{nav_items()}\n{NAV_CLOSE}{tail}"


class Loader(template.BaseLoader):
    """Flower's templates, with Stalwart's beside them (``stalwart/...``) and Stalwart's items in
    Flower's navbar. Names are not resolved relative to the including template, so our pages can
    extend Flower's ``base.html``. Autoescaping stays on (Tornado's default)."""

    def __init__(self, flower_templates: Path) -> None:
        super().__init__()
        self.flower_templates = flower_templates

    def resolve_path(self, name: str, parent_path: str | None = None) -> str:
        return name

    def _create_template(self, name: str) -> template.Template:
        path = TEMPLATES / name[len(PREFIX):] if name.startswith(PREFIX) else self.flower_templates / name
        source = path.read_text(encoding="utf-8")
        if name == "navbar.html":
            source = add_nav(source)
        return template.Template(source, name=name, loader=self)


def console_app_class(build: Callable[[Any], None]) -> type:
    """Flower's app class, extended: ``build(app)`` adds the console once Flower's app exists,
    and Flower's own templates are read through :class:`Loader`."""
    flower_app = importlib.import_module("flower.app")
    flower_urls = importlib.import_module("flower.urls")

    class ConsoleFlower(flower_app.Flower):  # type: ignore[misc,name-defined]
        def __init__(self, options: Any = None, capp: Any = None, **kwargs: Any) -> None:
            kwargs["template_loader"] = Loader(Path(flower_urls.settings["template_path"]))
            super().__init__(options=options, capp=capp, **kwargs)
            self.refuse: Callable[[Any], type | None] = lambda request: None
            build(self)

        def find_handler(self, request: Any, **kwargs: Any) -> Any:
            refused = self.refuse(request)  # read-only logins: refused before any handler runs
            if refused is not None:
                return self.get_handler_delegate(request, refused)
            return super().find_handler(request, **kwargs)

    return ConsoleFlower


def prefixed(handlers: Sequence[Any], url_prefix: str | None) -> list[Any]:
    """Routes under Flower's ``--url_prefix``, rewritten the way Flower rewrites its own."""
    if not url_prefix:
        return list(handlers)
    rewrite = importlib.import_module("flower.app").rewrite_handler
    return [rewrite(h, url_prefix) for h in handlers]


def run(celery_argv: list[str], build: Callable[[Any], None]) -> int:
    """Run Flower's own command under Celery's CLI (``celery <argv>``) with the console added."""
    check()
    command: Any = importlib.import_module("flower.command")
    celery_cli = importlib.import_module("celery.bin.celery")
    # Flower's command instantiates the module-global ``Flower``: point it at our subclass.
    command.Flower = console_app_class(build)
    celery_cli.celery.add_command(command.flower)
    try:
        celery_cli.celery.main(args=celery_argv, prog_name="stalwart", auto_envvar_prefix="CELERY")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
