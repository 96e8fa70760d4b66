"""Redis plumbing: clients built from URLs, and Lua scripts called by SHA."""

from .connection import client_from_url
from .scripts import Script, load_script

__all__ = ["Script", "client_from_url", "load_script"]
