"""The dispatcher's web map (``/map``), its staff login and the landing page (``/``); docs/map.md.

The page is static HTML and JavaScript (``api/static/map``) on the vendored MapLibre GL JS; it reads
the tiles and the JSON API with the login session cookie (see ``api.deps``: GET/HEAD only). Nothing on
the page comes from another host unless a basemap is configured (``SMARTCODE_MAP_*``).
"""

from __future__ import annotations

import html
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import SESSION_COOKIE, issue_session, services, session_actor
from common.errors import Forbidden, Unauthorized
from registry import tokens
from registry.access import Action, require_role

router = APIRouter(tags=["map"], include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
{head}
<link rel="stylesheet" href="/static/map/map.css">
</head>
<body class="{body_class}">
{body}
</body>
</html>
"""


def _page(
    title: str, body: str, *, head: str = "", body_class: str = "page", status: int = 200
) -> HTMLResponse:
    html_text = _PAGE.format(title=html.escape(title), head=head, body=body, body_class=body_class)
    return HTMLResponse(
        html_text,
        status_code=status,
        # The page holds no secret, but a cached copy must not outlive a logout on a shared desk.
        headers={"Cache-Control": "no-store", "Referrer-Policy": "same-origin"},
    )


def _login_form(message: str = "") -> str:
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<main class="card">
<h1>智慧码 · 分拨地图 登录</h1>
<p>设施位置属于内部信息，仅限工作人员查看。请输入您的访问令牌（API token）。</p>
{error}
<form method="post" action="/map/login" autocomplete="off">
<label for="token">访问令牌</label>
<input id="token" name="token" type="password" required autofocus spellcheck="false">
<button type="submit">登录</button>
</form>
<p class="small">令牌只在登录时发送一次；浏览器之后只保存一个会话 Cookie（HttpOnly），
令牌不会出现在网址中。</p>
<p class="small"><a href="/">返回首页</a></p>
</main>"""


@router.get("/", response_class=HTMLResponse)
def landing() -> HTMLResponse:
    """A short landing page in Chinese: the map, the API documentation."""
    body = """<main class="card">
<h1>智慧码 城市部件权属登记</h1>
<p>谁负责这根电杆、这条电缆、这个井盖？本服务登记城市部件的权属单位、养护单位和主管部门，
并按位置或编码查询责任单位。</p>
<ul class="links">
<li><a href="/map">分拨地图</a> —— 分拨员在地图上查部件、点位置查责任单位（需登录）</li>
<li><a href="/docs">接口文档（OpenAPI）</a> —— 案件系统、专业系统对接</li>
<li><a href="/tiles/tiles.json">矢量瓦片 TileJSON</a> —— GIS 客户端</li>
</ul>
<p class="small">扫描部件二维码标签时，手机打开的是标签上的网址（/c/编码），
无需登录即可看到部件类别和联系电话。</p>
</main>"""
    return _page("智慧码", body)


@router.get("/map/login", response_class=HTMLResponse)
def login_page() -> HTMLResponse:
    """The login form."""
    return _page("登录 · 分拨地图", _login_form())


@router.post("/map/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form(max_length=512)] = "") -> Response:
    """Check the token once and answer with the session cookie (never the token) and a redirect."""
    svc = services(request)
    try:
        with svc.session() as session:
            actor, ref = tokens.session_ref(session, token.strip(), svc.settings)
            require_role(actor, Action.READ_FULL)
    except (Unauthorized, Forbidden):
        return _page("登录失败 · 分拨地图", _login_form("令牌无效或已被吊销，请检查后重试。"), status=401)
    response = RedirectResponse("/map", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        issue_session(svc.settings, ref),
        max_age=int(svc.settings.map.session_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/map/logout")
def logout(request: Request) -> Response:
    """End the session in this browser (the cookie is dropped) and show the login form."""
    response = RedirectResponse("/map/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


@router.get("/map", response_class=HTMLResponse)
def map_page(request: Request) -> Response:
    """The map for a logged-in member of staff; everyone else is sent to the login form."""
    svc = services(request)
    with svc.session() as session:
        actor = session_actor(session, svc.settings, request.cookies.get(SESSION_COOKIE))
    if actor is None:
        return RedirectResponse("/map/login", status_code=303)
    settings = svc.settings.map
    minx, miny, maxx, maxy = svc.area.bounds
    config: dict[str, Any] = {
        "center": list(svc.area.centroid),
        "bounds": [minx, miny, maxx, maxy],
        "basemap": {
            "url": settings.basemap_url,
            "style": settings.basemap_style_url,
            "crs": settings.basemap_crs,
            "attribution": settings.attribution,
        },
        "user": actor.name,
        "maxZoom": svc.settings.tiles.max_zoom,
        "complaintDays": svc.settings.tiles.complaint_days,
    }
    # "</" cannot end the script element from inside a JSON string once "/" is escaped.
    config_json = orjson.dumps(config).decode().replace("</", "<\\/")
    head = (
        '<link rel="stylesheet" href="/static/maplibre-gl/maplibre-gl.css">\n'
        f'<script id="map-config" type="application/json">{config_json}</script>\n'
        '<script type="module" src="/static/map/map.js"></script>'
    )
    body = f"""<div id="map" aria-label="地图"></div>
<aside id="panel">
<header><h1>分拨地图</h1>
<form method="post" action="/map/logout" class="logout"><span>{html.escape(actor.name)}</span>
<button type="submit">退出</button></form></header>
<section>
<label for="search">查找部件</label>
<div class="row"><input id="search" placeholder="智慧码或扫码得到的网址">
<button id="search-go" type="button">查找</button></div>
</section>
<section>
<label for="pick">点击地图查责任单位：类别</label>
<select id="pick"><option value="">（任意部件）</option></select>
</section>
<section>
<label for="coords">输入坐标查询</label>
<div class="row"><input id="coords" placeholder="114.35, 22.70">
<select id="coords-crs" aria-label="坐标系">
<option value="wgs84">WGS84</option><option value="gcj02">GCJ-02（高德/腾讯）</option>
<option value="bd09">BD-09（百度）</option></select>
<button id="coords-go" type="button">查询</button></div>
</section>
<section><h2>图层</h2>
<label class="toggle"><input type="checkbox" id="show-complaints" checked>
诉求（近 {svc.settings.tiles.complaint_days} 天）</label>
<label class="toggle"><input type="checkbox" id="show-hotspots" checked>高频 / 热点预警</label>
</section>
<section id="result" aria-live="polite"></section>
<section><h2>图例</h2><ul id="legend"></ul></section>
</aside>"""
    return _page("分拨地图 · 智慧码", body, head=head, body_class="map")
