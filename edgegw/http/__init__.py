"""HTTP interface of edgegw: the Puzzel send codec, the h11 listener and the routes."""

from edgegw.http.app import Backend, make_app
from edgegw.http.puzzel import (
    RequestSyntaxError,
    ResponseFormat,
    decode_json,
    decode_query,
    encode_response,
    negotiate,
    syntax_error_response,
)
from edgegw.http.server import App, HttpLimits, Request, Response, serve_connection, serve_http

__all__ = [
    "App",
    "Backend",
    "HttpLimits",
    "Request",
    "RequestSyntaxError",
    "Response",
    "ResponseFormat",
    "decode_json",
    "decode_query",
    "encode_response",
    "make_app",
    "negotiate",
    "serve_connection",
    "serve_http",
    "syntax_error_response",
]
