"""The seam with Flower, pinned: what the console uses of Flower's internals is there in the
installed Flower, and when it is not, ``stalwart flower`` stops at start with one line naming the
supported range (never a blank page)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import click
import pytest
import tornado.web
from tornado.template import Template

from stalwart.cli.main import main
from stalwart.console import flower as seam
from stalwart.console.routes import routes
from stalwart.errors import StalwartError
from stalwart.settings import Settings

FLOWER_TEMPLATES = Path(importlib.import_module("flower.urls").settings["template_path"])
PAGES = ("dead_letters", "entry", "causes", "breakers", "limits", "switches", "queues", "audit")


def test_the_installed_flower_is_supported() -> None:
    assert seam.problems() == []
    seam.check()
    assert seam._version_ok(seam.flower_version())


def test_each_internal_the_console_uses_is_there_and_shaped_as_expected() -> None:
    command = importlib.import_module("flower.command")
    app = importlib.import_module("flower.app")
    views = importlib.import_module("flower.views")
    assert isinstance(command.flower, click.Command)
    assert issubclass(command.Flower, app.Flower)  # the module global the command instantiates
    assert issubclass(app.Flower, tornado.web.Application)
    assert {"options", "capp"} <= set(inspect.signature(app.Flower.__init__).parameters)
    for name in ("get_current_user", "check_xsrf_cookie", "render", "write_error"):
        assert callable(getattr(views.BaseHandler, name)), name
    assert callable(importlib.import_module("flower.api").BaseApiHandler.prepare)
    rewritten = app.rewrite_handler(tornado.web.url(r"/x", tornado.web.RequestHandler, name="x"), "pre")
    assert rewritten.regex.pattern == "/pre/x$"


@pytest.mark.parametrize("version", ["1.2.0", "3.0.0", "garbage", "none"])
def test_an_unsupported_version_stops_at_start_with_one_line(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(seam, "flower_version", lambda: version)
    with pytest.raises(seam.FlowerUnsupported) as caught:
        seam.check()
    message = str(caught.value)
    assert "\n" not in message
    assert ">=2.0,<3" in message
    assert version in message
    assert isinstance(caught.value, StalwartError)


def test_a_moved_internal_stops_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seam, "REQUIRED", (*seam.REQUIRED, ("flower.app", "GoneInFlower3")))
    with pytest.raises(seam.FlowerUnsupported, match=r"flower\.app\.GoneInFlower3 is gone"):
        seam.check()


def test_moved_templates_are_found_out(tmp_path: Path) -> None:
    (tmp_path / "base.html").write_text("{% block container %}{% end %}")
    (tmp_path / "navbar.html").write_text("<nav><ul class='other'></ul></nav>")
    found = seam._template_problems(tmp_path)
    assert any("block navbar" in p for p in found)
    assert any("primary navigation" in p for p in found)
    assert seam._template_problems(tmp_path / "missing")[0].startswith("Flower's templates are not where")


def test_stalwart_flower_exits_with_one_line_when_flower_does_not_fit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(seam, "flower_version", lambda: "3.1.0")
    assert main(["flower", "--port=1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("stalwart: stalwart flower supports Flower >=2.0,<3")
    assert len(err.strip().splitlines()) == 1


def test_the_navbar_gets_stalwarts_items_after_flowers_own() -> None:
    loader = seam.Loader(FLOWER_TEMPLATES)
    source = seam.add_nav((FLOWER_TEMPLATES / "navbar.html").read_text())
    assert source.index("reverse_url('broker')") < source.index('reverse_url("stalwart-dead-letters")')
    html = loader.load("navbar.html").generate(
        active_tab="stalwart-causes", reverse_url=lambda name, *a: f"/{name}", static_url=lambda p: p,
        handler=type("H", (), {"application": type("A", (), {"options": type("O", (), {"auth": ""})()})()})(),
        current_user=None,
    ).decode()
    assert '<a class="nav-link active" href="/stalwart-causes" aria-current="page">Causes</a>' in html
    for _, label, route in seam.NAV:
        assert f'href="/{route}"' in html
        assert f">{label}</a>" in html


@pytest.mark.parametrize("page", PAGES)
def test_every_console_page_extends_flowers_layout(page: str) -> None:
    template = seam.Loader(FLOWER_TEMPLATES).load(f"stalwart/{page}.html")
    assert isinstance(template, Template)
    assert "base.html" in (seam.TEMPLATES / "layout.html").read_text()


def test_routes_are_named_for_the_navbar_and_live_under_api_for_scripts() -> None:
    names = {r.name for r in routes() if isinstance(r, tornado.web.URLSpec) and r.name}
    assert {route for _, _, route in seam.NAV} <= names
    api = [r[0] for r in routes() if isinstance(r, tuple)]
    assert api
    assert all(path.startswith("/api/stalwart/") for path in api)


@pytest.mark.parametrize(("raw", "expected"), [("", False), ("0", False), ("no", False), ("1", True),
                                               ("true", True), ("ON", True)])
def test_console_readonly_setting(raw: str, expected: bool) -> None:
    assert Settings.from_env({"STALWART_CONSOLE_READONLY": raw}).console_readonly is expected


def test_console_settings_refuse_bad_values_without_showing_secrets() -> None:
    with pytest.raises(StalwartError, match="STALWART_CONSOLE_READONLY must be"):
        Settings.from_env({"STALWART_CONSOLE_READONLY": "maybe"})
    with pytest.raises(StalwartError) as caught:
        Settings.from_env({"STALWART_CONSOLE_READONLY_AUTH": "viewer-without-password-s3cret"})
    assert "s3cret" not in str(caught.value)
    settings = Settings.from_env({"STALWART_CONSOLE_READONLY_AUTH": "a:pw1, b:pw2"})
    assert settings.console_readonly_auth == ("a:pw1", "b:pw2")
    assert "pw1" not in repr(settings)
