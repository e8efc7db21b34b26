"""HTTP routes of the read-only viewer: ``GET /`` lists the spreadsheets, ``GET /view/{id}`` shows one.

Only GET is routed, so any other method gets 405 and nothing here can change a spreadsheet. Each answer
carries its content's ETag; the page's script asks again with ``If-None-Match`` and gets a bodiless 304
while nothing changed. These paths are outside the API prefixes, so the fault injector neither counts nor
faults them, and an open page does not disturb a test counting API requests.
"""

from __future__ import annotations

from typing import Any, Final

from litestar import MediaType, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from .page import (
    CONTENT_SECURITY_POLICY,
    content_etag,
    document,
    index_content,
    missing_content,
    spreadsheet_content,
)
from .service import LocalSheetsService

Service = NamedDependency[LocalSheetsService]


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names this ETag or ``*`` (compared weakly, as RFC 9110 says)."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _answer(request: Request[Any, Any, Any], title: str, content: str, status: int = 200) -> Response[str]:
    etag = content_etag(content)
    headers = {
        "ETag": etag,
        # Revalidate on every load: the page is live, a cached copy is stale by design.
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if status == 200 and etag_matches(request.headers.get("if-none-match"), etag):
        return Response(content="", status_code=304, headers=headers, media_type=MediaType.HTML)
    return Response(
        content=document(title, content), status_code=status, headers=headers, media_type=MediaType.HTML
    )


@get("/", operation_id="page.index")
async def index_page(request: Request[Any, Any, Any], service: Service) -> Response[str]:
    """The list of spreadsheets on this server, each linked to its grids."""
    return _answer(request, "Local spreadsheets", index_content(service.spreadsheets.values()))


@get("/view/{spreadsheet_id:str}", operation_id="page.spreadsheet")
async def spreadsheet_page(
    spreadsheet_id: FromPath[str], request: Request[Any, Any, Any], service: Service
) -> Response[str]:
    """One spreadsheet, every sheet as a grid (404 while no spreadsheet has this id)."""
    spreadsheet = service.spreadsheets.get(spreadsheet_id)
    if spreadsheet is None:
        return _answer(request, "Not found", missing_content(spreadsheet_id), status=404)
    return _answer(request, spreadsheet.title, spreadsheet_content(spreadsheet))


PAGE_ROUTES: Final = [index_page, spreadsheet_page]
