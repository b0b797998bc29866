#!/usr/bin/env python3
"""Drive Heft's Alipay simulator with the two public Alipay SDKs for Python, changing nothing but
the gateway URL.

Clients (PyPI):
- `python-alipay-sdk` (fzlee/alipay, tested with 3.4.0): server APIs as `GET gateway.do?…`,
  refusals read under the method's `…_response` key;
- `alipay-sdk-python` (Alipay's own, tested with 3.7.1411): `POST` with the system parameters in
  the query string, the answer's signature checked over the raw response object.

The shopper's part (approving the freeze in the Alipay cashier) is the simulator's test hook
`POST /sim/alipay/confirm`, given the `orderStr` python-alipay-sdk signs. Then: the freeze is
queried, captured with `alipay.trade.pay` (auth_no), the trade queried, half refunded, the refund
queried, the rest unfrozen; refusals (unknown trade, unknown app id) come back as the SDKs expect;
and the day's bill is refused until the platforms' clock reaches the next morning, then served.

Run:
    pip install python-alipay-sdk==3.4.0 alipay-sdk-python==3.7.1411
    # the ignored integration test starts a simulator and runs this script:
    cargo test --test pay_alipay -- --ignored third_party
    # or against any running simulator (`cargo run -- serve` with the shipped config, on :8090):
    ALIPAY_SIM_BASE=http://127.0.0.1:8090 python3 scripts/alipay_third_party.py

Exits 0 when every step passed; prints one line per step.
"""

import datetime
import io
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile

# Both SDKs stamp requests with the machine's local time, which Alipay reads as Beijing time:
# they run in China. So does this script, wherever the machine is.
os.environ["TZ"] = "Asia/Shanghai"
time.tzset()

from alipay import AliPay
from alipay.exceptions import AliPayException
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.domain.AlipayFundAuthOperationDetailQueryModel import AlipayFundAuthOperationDetailQueryModel
from alipay.aop.api.request.AlipayFundAuthOperationDetailQueryRequest import AlipayFundAuthOperationDetailQueryRequest
from alipay.aop.api.domain.AlipayTradeFastpayRefundQueryModel import AlipayTradeFastpayRefundQueryModel
from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import AlipayTradeFastpayRefundQueryRequest
from cryptography.hazmat.primitives import serialization

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.environ.get("ALIPAY_SIM_BASE", "http://127.0.0.1:8090").rstrip("/")
GATEWAY = BASE + "/gateway.do"
APP_ID = "2021000000000001"
SELLER_ID = "2088102000275795"
BUYER = "2088102000300042"


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


APP_KEY_PEM = read("src/pay/sim/keys/alipay-app.key.pem")
ALIPAY_PUB_PEM = read("src/pay/sim/keys/alipay-platform.pub.pem")


def body_of(pem_bytes):
    return "".join(l for l in pem_bytes.decode().splitlines() if not l.startswith("-----"))


def pkcs1_body(pkcs8_pem):
    """Alipay's console hands out PKCS#1 key text without armour, which the official SDK expects."""
    key = serialization.load_pem_private_key(pkcs8_pem.encode(), password=None)
    return body_of(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()))


def step(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""))
    if not ok:
        sys.exit(1)


def post_json(path, body):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


# python-alipay-sdk: the gateway is the only change.
fz = AliPay(appid=APP_ID, app_notify_url=None, app_private_key_string=APP_KEY_PEM,
            alipay_public_key_string=ALIPAY_PUB_PEM, sign_type="RSA2", debug=False)
fz._gateway = GATEWAY

def forward_port_80():
    """alipay-sdk-python drops the port of its server URL (WebUtils.get_http_connection always dials
    80 or 443), so it can only reach a platform on the standard port. Stand in for the load balancer
    the real gateway sits behind: listen on port 80 of a loopback address of our own and pass the
    bytes through to the simulator. Needs the right to bind port 80 (root, as in CI)."""
    target = urllib.parse.urlparse(BASE)
    for _ in range(20):
        host = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(1, 254), random.randint(2, 254))
        server = socket.socket()
        try:
            server.bind((host, 80))
            break
        except OSError:
            server.close()
    else:
        step("port 80 on a loopback address for alipay-sdk-python", False, "cannot bind (not root?)")
    server.listen(16)

    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            client, _ = server.accept()
            upstream = socket.create_connection((target.hostname, target.port or 80))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return "http://%s/gateway.do" % host


# Alipay's SDK: the server URL is the only change.
cfg = AlipayClientConfig()
cfg.server_url = GATEWAY if urllib.parse.urlparse(BASE).port in (None, 80) else forward_port_80()
cfg.app_id = APP_ID
cfg.app_private_key = pkcs1_body(APP_KEY_PEM)
cfg.alipay_public_key = body_of(ALIPAY_PUB_PEM.encode())
cfg.sign_type = "RSA2"
official = DefaultAlipayClient(alipay_client_config=cfg)

tag = uuid.uuid4().hex[:10].upper()
out_order_no, out_trade_no = "SDK" + tag, "SDKT" + tag

# The freeze: python-alipay-sdk signs the orderStr the mini-program would hand to my.tradePay.
order_str = fz.client_api("alipay.fund.auth.order.app.freeze", {
    "out_order_no": out_order_no, "out_request_no": out_order_no, "order_title": "Heft cabinet",
    "amount": "50.00", "product_code": "PRE_AUTH_ONLINE", "timeout_express": "30m",
})
status, answer = post_json("/sim/alipay/confirm", {"orderStr": order_str, "user_id": BUYER})
step("shopper approves the freeze (orderStr signed by python-alipay-sdk)", status == 200, answer)

detail = fz.server_api("alipay.fund.auth.operation.detail.query",
                       {"out_order_no": out_order_no, "out_request_no": out_order_no})
step("python-alipay-sdk: detail.query (GET)", detail.get("code") == "10000" and detail.get("status") == "SUCCESS", detail)
auth_no = detail["auth_no"]

model = AlipayFundAuthOperationDetailQueryModel()
model.out_order_no, model.out_request_no = out_order_no, out_order_no
req = AlipayFundAuthOperationDetailQueryRequest(biz_model=model)
official_detail = json.loads(official.execute(req))
step("alipay-sdk-python: detail.query (POST)", official_detail.get("auth_no") == auth_no, official_detail)

paid = fz.api_alipay_trade_pay(
    out_trade_no=out_trade_no, scene="bar_code", auth_code="", subject="Heft: 2 items",
    total_amount="12.50", product_code="PRE_AUTH_ONLINE", auth_no=auth_no, auth_confirm_mode="COMPLETE",
    buyer_id=BUYER, seller_id=SELLER_ID,
)
step("python-alipay-sdk: trade.pay with the auth_no", paid.get("code") == "10000", paid)

model = AlipayTradeQueryModel()
model.out_trade_no = out_trade_no
queried = json.loads(official.execute(AlipayTradeQueryRequest(biz_model=model)))
step("alipay-sdk-python: trade.query", queried.get("trade_status") == "TRADE_SUCCESS"
     and queried.get("total_amount") == "12.50", queried)

refund = fz.api_alipay_trade_refund(refund_amount="6.25", out_trade_no=out_trade_no, out_request_no=out_trade_no + "R1")
step("python-alipay-sdk: trade.refund", refund.get("code") == "10000" and refund.get("fund_change") == "Y", refund)

model = AlipayTradeFastpayRefundQueryModel()
model.out_trade_no, model.out_request_no = out_trade_no, out_trade_no + "R1"
refund_q = json.loads(official.execute(AlipayTradeFastpayRefundQueryRequest(biz_model=model)))
step("alipay-sdk-python: fastpay.refund.query", refund_q.get("refund_amount") == "6.25", refund_q)

# Whatever the trade left of the freeze goes back (COMPLETE already did; asking again is harmless).
detail = fz.server_api("alipay.fund.auth.operation.detail.query",
                       {"out_order_no": out_order_no, "out_request_no": out_order_no})
step("freeze after the capture", detail.get("rest_amount") in ("0.00", "37.50"), detail)

# Refusals, read the way each SDK reads them: a signed business refusal is an answer, an unsigned
# one (an app id Alipay does not know) an exception.
missing = fz.api_alipay_trade_query(out_trade_no="NOPE" + tag)
step("python-alipay-sdk: unknown trade refused", missing.get("sub_code") == "ACQ.TRADE_NOT_EXIST", missing)
stranger = AliPay(appid="2021999999999999", app_notify_url=None, app_private_key_string=APP_KEY_PEM,
                  alipay_public_key_string=ALIPAY_PUB_PEM, sign_type="RSA2", debug=False)
stranger._gateway = GATEWAY
try:
    stranger.api_alipay_trade_query(out_trade_no=out_trade_no)
    step("python-alipay-sdk: unknown app id refused", False, "no exception")
except AliPayException as e:
    step("python-alipay-sdk: unknown app id refused (unsigned)", "isv.invalid-app-id" in str(e), e)

# The bill: not for today; served once the platforms' clock is tomorrow morning.
today = (datetime.datetime.utcnow() + datetime.timedelta(hours=8)).strftime("%Y-%m-%d")
not_yet = fz.server_api("alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": today})
step("today's bill is not served", not_yet.get("sub_code") == "isp.bill_not_exist", not_yet)
status, _ = post_json("/sim/clock", {"offset_s": 33 * 3600})
step("the platforms' clock moves to tomorrow morning", status == 200)
bill = fz.server_api("alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": today})
with urllib.request.urlopen(bill["bill_download_url"], timeout=10) as res:
    archive = zipfile.ZipFile(io.BytesIO(res.read()))
names = archive.namelist()
detail_name = [n for n in names if n.endswith("业务明细.csv")]
step("the bill is a ZIP named by PID + 0156", detail_name == [SELLER_ID + "0156_" + today.replace("-", "") + "_业务明细.csv"], names)
text = archive.read(detail_name[0]).decode("gbk")
step("the bill lists the trade and its refund", out_trade_no in text and "退款" in text, len(text))
post_json("/sim/clock", {"offset_s": 0})
print("all steps passed")
