// The dashboard's words, in Chinese (the default) and English. `t(key)` gives the current
// language's; elements with `data-i18n` (text) or `data-i18n-placeholder` are filled by `applyI18n`.
"use strict";

const WORDS = {
  zh: {
    "title": "运营看板",
    "nav.fleet": "车队", "nav.orders": "订单", "nav.reviews": "复核", "nav.alerts": "告警", "nav.restock": "补货",
    "nav.money": "对账与报表",
    "money.day": "营业日", "money.days": "近 14 天（元）", "money.top": "当日销售额前列（元）", "money.cases": "待处理账单差异",
    "money.stock": "当日盘点差异", "money.gross": "销售额", "money.net": "净收入", "money.fees": "手续费", "money.refunds": "退款",
    "money.debt": "新增欠款", "money.loss": "损耗", "money.loss_rate": "损耗率", "money.review_rate": "复核率",
    "money.units": "日均销量", "money.turnover": "当日库存周转", "money.fees_billed": "账单手续费占比", "money.resolve": "处理", "money.note": "备注（必填）",
    "money.resolved": "已处理", "money.none": "无",
    "signout": "退出", "lang.other": "English",
    "login.title": "运营登录", "login.username": "用户名", "login.password": "密码", "login.submit": "登录",
    "login.failed": "用户名或密码错误",
    "link.live": "实时", "link.connecting": "连接中…", "link.down": "已断开，重连中…",
    "fleet.filter": "按编号或地址筛选", "fleet.any_liveness": "全部在线状态", "fleet.shown": "显示 {n} / {total} 台",
    "count.total": "货柜总数", "count.sellable": "可售", "count.busy": "使用中", "count.alerts": "有告警", "count.low": "缺货",
    "liveness.online": "在线", "liveness.suspect": "疑似离线", "liveness.offline": "离线",
    "status.initializing": "初始化", "status.ready": "就绪", "status.disabled": "已停用",
    "col.sn": "编号", "col.liveness": "在线", "col.status": "状态", "col.doors": "门", "col.session": "会话",
    "col.temp": "温度", "col.alerts": "告警", "col.low": "缺货",
    "map.note": "GCJ-02 坐标（无在线地图底图）；聚合点可点击放大，单点可打开货柜。",
    "back": "← 返回", "cabinet.weights": "货道重量（实时）", "cabinet.lanes": "货道", "cabinet.session": "当前会话",
    "cabinet.setup": "配置与标定", "cabinet.commands": "最近指令", "cabinet.events": "最近事件",
    "cabinet.free": "空闲", "cabinet.configured": "配置已下发", "cabinet.not_configured": "配置未确认",
    "cabinet.calibrated": "已标定货道 {n} / {total}",
    "lane.code": "货道", "lane.product": "商品", "lane.stock": "库存", "lane.threshold": "补货阈值", "lane.grams": "重量 g", "lane.noise": "噪声 / 漂移 g",
    "lane.calibrated": "标定",
    "act.labels": "重发价签", "act.restock": "开始补货", "act.maintenance": "开始维护", "act.end": "结束会话",
    "act.done": "已执行：{what}", "act.failed": "失败：{why}",
    "orders.feed": "订单动态", "orders.pick": "选择一个订单查看详情", "order.lines": "商品", "order.trace": "重量轨迹",
    "order.refunds": "退款", "order.total": "金额", "order.paid": "已付", "order.status": "状态", "order.time": "时间",
    "order.cabinet": "货柜", "order.no": "订单号",
    "reviews.queue": "待复核", "reviews.pick": "选择一个复核案例", "review.kind": "类型", "review.reasons": "原因",
    "review.note": "备注", "decision.charge": "按所填扣款", "decision.refund": "按所填退差额", "decision.dismiss": "驳回申诉",
    "review.resolved": "已处理", "alerts.code": "告警", "alerts.message": "内容", "alerts.count": "次数",
    "alerts.since": "首次", "alerts.cabinet": "货柜", "restock.task": "任务", "restock.status": "状态",
    "restock.wanted": "需补", "restock.since": "创建",
    "kind.purchase": "购物", "kind.restock": "补货", "kind.maintenance": "维护", "kind.calibration": "标定",
    "kind.config": "配置下发", "kind.price_change": "价签下发", "door.open": "门 {d} 开", "door.closed": "门 {d} 关",
  },
  en: {
    "title": "Operations",
    "nav.fleet": "Fleet", "nav.orders": "Orders", "nav.reviews": "Reviews", "nav.alerts": "Alerts", "nav.restock": "Restock",
    "nav.money": "Money",
    "money.day": "Business day", "money.days": "Last 14 days (yuan)", "money.top": "The day's top sellers (yuan)", "money.cases": "Open bill cases",
    "money.stock": "The day's stocktake differences", "money.gross": "Gross", "money.net": "Net", "money.fees": "Fees", "money.refunds": "Refunds",
    "money.debt": "Debt opened", "money.loss": "Loss", "money.loss_rate": "Loss rate", "money.review_rate": "Review rate",
    "money.units": "Units a day", "money.turnover": "Stock turned that day", "money.fees_billed": "Fees from the bills", "money.resolve": "Resolve", "money.note": "Note (required)",
    "money.resolved": "Resolved", "money.none": "None",
    "signout": "Sign out", "lang.other": "中文",
    "login.title": "Operator sign-in", "login.username": "Username", "login.password": "Password", "login.submit": "Sign in",
    "login.failed": "Wrong username or password",
    "link.live": "live", "link.connecting": "connecting…", "link.down": "disconnected, reconnecting…",
    "fleet.filter": "Filter by serial number or address", "fleet.any_liveness": "Any liveness", "fleet.shown": "{n} of {total} shown",
    "count.total": "Cabinets", "count.sellable": "Sellable", "count.busy": "In use", "count.alerts": "With alerts", "count.low": "Low stock",
    "liveness.online": "online", "liveness.suspect": "suspect", "liveness.offline": "offline",
    "status.initializing": "initializing", "status.ready": "ready", "status.disabled": "disabled",
    "col.sn": "Serial", "col.liveness": "Liveness", "col.status": "Status", "col.doors": "Doors", "col.session": "Session",
    "col.temp": "Temp.", "col.alerts": "Alerts", "col.low": "Low",
    "map.note": "GCJ-02 coordinates (no online tiles); click a cluster to zoom in, a single cabinet to open it.",
    "back": "← Back", "cabinet.weights": "Lane weights (live)", "cabinet.lanes": "Lanes", "cabinet.session": "Session",
    "cabinet.setup": "Configuration and calibration", "cabinet.commands": "Recent commands", "cabinet.events": "Recent events",
    "cabinet.free": "free", "cabinet.configured": "configuration acknowledged", "cabinet.not_configured": "configuration not acknowledged",
    "cabinet.calibrated": "{n} of {total} lanes calibrated",
    "lane.code": "Lane", "lane.product": "Product", "lane.stock": "Stock", "lane.threshold": "Threshold", "lane.grams": "Grams", "lane.noise": "Noise / drift g",
    "lane.calibrated": "Calibrated",
    "act.labels": "Resend labels", "act.restock": "Start restock", "act.maintenance": "Start maintenance", "act.end": "End session",
    "act.done": "Done: {what}", "act.failed": "Failed: {why}",
    "orders.feed": "Orders, live", "orders.pick": "Pick an order to see it", "order.lines": "Lines", "order.trace": "Weight trace",
    "order.refunds": "Refunds", "order.total": "Total", "order.paid": "Paid", "order.status": "Status", "order.time": "Time",
    "order.cabinet": "Cabinet", "order.no": "Order no.",
    "reviews.queue": "Review queue", "reviews.pick": "Pick a case", "review.kind": "Kind", "review.reasons": "Reasons",
    "review.note": "Note", "decision.charge": "Charge these", "decision.refund": "Refund the difference", "decision.dismiss": "Dismiss the appeal",
    "review.resolved": "Resolved", "alerts.code": "Alert", "alerts.message": "Message", "alerts.count": "Times",
    "alerts.since": "Since", "alerts.cabinet": "Cabinet", "restock.task": "Task", "restock.status": "Status",
    "restock.wanted": "Wanted", "restock.since": "Created",
    "kind.purchase": "purchase", "kind.restock": "restock", "kind.maintenance": "maintenance", "kind.calibration": "calibration",
    "kind.config": "configuration", "kind.price_change": "labels", "door.open": "door {d} open", "door.closed": "door {d} closed",
  },
};

let LANG = localStorage.getItem("heft.lang") === "en" ? "en" : "zh";

function t(key, vars) {
  let s = (WORDS[LANG] && WORDS[LANG][key]) || WORDS.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", v);
  return s;
}

function applyI18n(root) {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  for (const el of (root || document).querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of (root || document).querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  document.getElementById("lang").textContent = t("lang.other");
}

function switchLanguage() {
  LANG = LANG === "zh" ? "en" : "zh";
  localStorage.setItem("heft.lang", LANG);
  applyI18n();
}
