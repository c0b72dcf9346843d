"""The OpenAPI document works with a front-end team's toolchain at its default settings: openapi-typescript 7
generates the types from the document the app serves, and a small openapi-fetch client (sign in, bind the
phone, post an order, read points and history) compiles under `tsc --strict`.

Node and the packages are installed by scripts/setup.sh (package.json devDependencies), so a missing tool is
a failure here, not a skip. No stack is needed: GET /openapi.json reads nothing from DynamoDB."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"

# What a mini-program / POS front end writes. Optional request fields are left out, never sent as null.
CLIENT = """\
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

type OrderView = components["schemas"]["OrderView"];

const api = createClient<paths>({ baseUrl: "http://127.0.0.1:8000" });
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

export async function firstVisit(loginCode: string, phoneCode: string, staffToken: string): Promise<number> {
  const signIn = await api.POST("/auth/wechat", { body: { code: loginCode } });
  if (!signIn.data) throw new Error(signIn.error.message);

  // store_id and consent are optional: not sent
  const bound = await api.POST("/members/me/phone", { body: { code: phoneCode }, headers: bearer(signIn.data.token) });
  if (!bound.data) throw new Error(`${bound.error.code}: ${bound.error.message}`);
  const member = bound.data.member;
  if (member === null) throw new Error("no member after binding the phone");
  const memberId: string = member.member_id;
  const token: string = bound.data.token;

  // a member order: member_id only, no phone: null
  const posted = await api.POST("/orders", {
    headers: bearer(staffToken),
    body: {
      order_id: "pos-0001",
      member_id: memberId,
      store_id: "sh-001",
      channel: "store",
      paid_at: new Date().toISOString(),
      amount: 2500,
      items: [{ sku: "sku-1", name: "拿铁", category: "drinks", qty: 1, amount: 2500 }],
    },
  });
  if (!posted.data) throw new Error(posted.error.message);
  const earned: number = posted.data.points_earned;

  const points = await api.GET("/members/{member_id}/points", {
    params: { path: { member_id: memberId } }, headers: bearer(token),
  });
  if (!points.data) throw new Error(points.error.message);
  const balance: number = points.data.balance;

  let history: OrderView[] = [];
  let cursor: string | undefined;
  do {
    const page = await api.GET("/members/{member_id}/orders", {
      params: { path: { member_id: memberId }, query: cursor === undefined ? { limit: 20 } : { limit: 20, cursor } },
      headers: bearer(token),
    });
    if (!page.data) throw new Error(page.error.message);
    history = history.concat(page.data.items);
    cursor = page.data.next_cursor ?? undefined;
  } while (cursor !== undefined);
  const spent: number = history.reduce((sum, order) => sum + order.amount, 0);
  return balance + earned + spent;
}
"""

# As a Vite/React project's tsconfig has it. skipLibCheck skips only the .d.ts files (lib.dom, openapi-fetch):
# the generated types are written as schema.ts, so they are checked in full.
TSC_OPTIONS = ["--strict", "--noEmit", "--skipLibCheck", "--target", "es2022", "--module", "esnext",
               "--moduleResolution", "bundler", "--lib", "es2022,dom"]


def _tool(name: str) -> Path:
    path = NODE_MODULES / ".bin" / name
    assert path.exists(), f"{path} is missing: run `make setup` (package.json devDependencies)"
    return path


def _run(args: list[str | Path], cwd: Path) -> None:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{Path(str(args[0])).name} failed:\n{done.stdout}\n{done.stderr}"


def served_document() -> dict:
    from chalice.test import Client

    from app import app

    with Client(app) as client:
        response = client.http.get("/openapi.json")
    assert response.status_code == 200
    return json.loads(response.body)


def test_openapi_fetch_client_compiles_strict(tmp_path: Path):
    assert shutil.which("node"), "node is missing: run `make setup` (it installs Node.js where it can)"
    generate, tsc = _tool("openapi-typescript"), _tool("tsc")
    (tmp_path / "openapi.json").write_text(json.dumps(served_document(), ensure_ascii=False))
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)  # the client resolves openapi-fetch from the repo
    _run([generate, "openapi.json", "--output", "schema.ts"], tmp_path)  # default settings
    (tmp_path / "client.ts").write_text(CLIENT)
    _run([tsc, *TSC_OPTIONS, "client.ts"], tmp_path)
