#!/usr/bin/env python3
"""Drive Heft's WeChat Pay simulator with a third-party WeChat Pay v3 client.

Client: `wechatpayv3` from PyPI (minibear2021/wechatpayv3; tested with 2.0.4), in WeChat Pay
public-key mode (`public_key` / `public_key_id`). It creates, queries and cancels Pay Score orders,
completes one, and verifies + decrypts the simulator's callback with its own `callback()` parser
(a small HTTP server in this script is the notify_url).

Run:
    pip install wechatpayv3==2.0.4
    # a simulator: either the ignored integration test, which starts one and runs this script,
    CARGO_TARGET_DIR=/work/main/target cargo test --test pay_wechat -- --ignored third_party
    # or any running simulator (e.g. `cargo run -- serve` with the shipped config, on :8090):
    WECHAT_SIM_BASE=http://127.0.0.1:8090 python3 scripts/wechatpay_third_party.py

Keys and ids are the simulator's demo values from config.toml and src/pay/sim/keys/. Exits 0 when
every step passed; prints one line per step.
"""

import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

from wechatpayv3 import WeChatPay, WeChatPayType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.environ.get("WECHAT_SIM_BASE", "http://127.0.0.1:8090").rstrip("/")
MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
SERVICE_ID = "2002000000000558128851361561536"
SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUB_KEY_ID = "PUB_KEY_ID_0112300001092025112500000000000000"
APIV3_KEY = "0123456789abcdefghijABCDEFGHIJ01"


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


CALLBACKS = []


class Notify(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        result = WXPAY.callback(headers, body)
        CALLBACKS.append(result)
        self.send_response(204 if result else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Notify)
threading.Thread(target=server.serve_forever, daemon=True).start()
NOTIFY_URL = "http://127.0.0.1:%d/pay/wechat/notify" % server.server_address[1]

WXPAY = WeChatPay(
    wechatpay_type=WeChatPayType.MINIPROG,
    mchid=MCHID,
    private_key=read("src/pay/sim/keys/wechat-merchant.key.pem"),
    cert_serial_no=SERIAL,
    appid=APPID,
    apiv3_key=APIV3_KEY,
    notify_url=NOTIFY_URL,
    public_key=read("src/pay/sim/keys/wechat-platform.pub.pem"),
    public_key_id=PUB_KEY_ID,
    timeout=(5, 10),
)
# The library has no base-URL option: point its core at the simulator.
WXPAY._core._gate_way = BASE

failures = 0


def step(name, ok, detail=""):
    global failures
    print("%s %s %s" % ("PASS" if ok else "FAIL", name, detail))
    if not ok:
        failures += 1


def sim_post(path, body):
    req = urllib.request.Request(BASE + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def create(no):
    return WXPAY.payscore_create(
        out_order_no=no,
        service_id=SERVICE_ID,
        service_introduction="智能售货柜购物",
        time_range={"start_time": "OnAccept"},
        risk_fund={"name": "ESTIMATE_ORDER_COST", "amount": 20000, "description": "预估商品费用"},
        attach="py-session",
    )


def query(no):
    code, text = WXPAY.payscore_query(service_id=SERVICE_ID, out_order_no=no)
    return code, json.loads(text)


# 1. create → query CREATED → cancel → query REVOKED
no1 = "PY" + uuid.uuid4().hex[:20]
code, text = create(no1)
order = json.loads(text)
step("create", code == 200 and order.get("state") == "CREATED" and order.get("package"), "%s %s" % (code, text[:80]))
code, text = create(no1)
step("create again (idempotent)", code == 200, str(code))
code, q = query(no1)
step("query CREATED", code == 200 and q["state"] == "CREATED", "%s %s" % (code, q.get("state")))
code, text = WXPAY.payscore_cancel(out_order_no=no1, service_id=SERVICE_ID, reason="未确认")
step("cancel", code == 200, "%s %s" % (code, text[:80]))
code, q = query(no1)
step("query REVOKED", code == 200 and q["state"] == "REVOKED", "%s %s" % (code, q.get("state")))

# 2. create → confirm on the (simulated) phone → USER_CONFIRM callback parsed by the library
no2 = "PY" + uuid.uuid4().hex[:20]
code, text = create(no2)
package = json.loads(text).get("package")
status, _ = sim_post("/sim/wechat/confirm", {"package": package, "openid": "oPython"})
step("confirm hook", status == 200, str(status))
deadline = time.time() + 10
while time.time() < deadline and not CALLBACKS:
    time.sleep(0.05)
cb = CALLBACKS[0] if CALLBACKS else None
step(
    "USER_CONFIRM callback verified+decrypted by wechatpayv3",
    bool(cb) and cb["event_type"] == "PAYSCORE.USER_CONFIRM" and cb["resource"]["out_order_no"] == no2,
    json.dumps(cb, ensure_ascii=False)[:160] if cb else "none",
)

# 3. complete → USER_PAID callback → query DONE
code, text = WXPAY.payscore_complete(
    out_order_no=no2,
    service_id=SERVICE_ID,
    post_payments=[{"name": "可乐", "amount": 700, "count": 2}],
    total_amount=700,
)
step("complete", code == 200 and json.loads(text).get("state_description") == "MCH_COMPLETE", "%s %s" % (code, text[:80]))
deadline = time.time() + 10
while time.time() < deadline and len(CALLBACKS) < 2:
    time.sleep(0.05)
paid = CALLBACKS[1] if len(CALLBACKS) > 1 else None
step("USER_PAID callback", bool(paid) and paid["event_type"] == "PAYSCORE.USER_PAID", "")
code, q = query(no2)
step("query DONE", code == 200 and q["state"] == "DONE" and q["collection"]["state"] == "USER_PAID", q.get("state"))

# 4. a wrongly signed request is refused (the library raises nothing for non-2xx: it returns them)
WXPAY._core._mchid = "999"
code, text = WXPAY.payscore_query(service_id=SERVICE_ID, out_order_no=no2)
WXPAY._core._mchid = MCHID
step("wrong mchid → 401 SIGN_ERROR", code == 401 and "SIGN_ERROR" in text, "%s %s" % (code, text[:80]))

server.shutdown()
print("failures:", failures)
sys.exit(1 if failures else 0)
