// The dashboard in real headless Chromium (tests/dashboard.rs runs this against a node it
// started): sign in, see the fleet count, open a cabinet, watch its lane chart move during a
// purchase, resolve a review, read the day's money and resolve a bill case, switch the language. Screenshots go to SCREENSHOTS.
//
// Talks to the Rust test over stdio: prints `STEP <name>` lines, and waits for a line on stdin
// where the test must act (the purchase). Exits non-zero on the first failure.
import { chromium } from "playwright-core";
import readline from "node:readline";

const [base, username, password, sn, caseId] = process.argv.slice(2);
const shots = process.env.SCREENSHOTS || ".";
const lines = readline.createInterface({ input: process.stdin });
const waitLine = () => new Promise((resolve) => lines.once("line", resolve));
const step = (name) => console.log(`STEP ${name}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--lang=zh-CN"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, locale: "zh-CN" });
  page.on("pageerror", (e) => { console.error("page error:", e.message); process.exitCode = 1; });

  // Sign in: the page speaks Chinese by default.
  await page.goto(base + "/");
  await page.waitForSelector("#login");
  const title = await page.textContent("#login h2");
  if (title !== "运营登录") throw new Error(`sign-in title ${title}`);
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", password);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#link[data-state=live]");
  step("signed-in");

  // The fleet count, the table and the map.
  await page.waitForFunction(() => Number(document.querySelector('[data-count="total"] b')?.textContent) >= 1);
  const total = await page.textContent('[data-count="total"] b');
  console.log(`FLEET ${total}`);
  await page.waitForSelector(`#fleet-scroll [data-sn="${sn}"]`);
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${shots}/fleet.png` });
  step("fleet");

  // The table at this size: a whole re-render, and a scroll to the end.
  const render = await page.evaluate(() => { const t0 = performance.now(); renderFleet(); return performance.now() - t0; });
  const scroll = await page.evaluate(() => {
    const box = document.querySelector("#fleet-scroll"), t0 = performance.now();
    box.scrollTop = box.scrollHeight; renderVisibleRows();
    return performance.now() - t0;
  });
  console.log(`RENDER fleet table ${render.toFixed(1)} ms (with the map's clustering), scroll ${scroll.toFixed(1)} ms`);
  await page.evaluate(() => { document.querySelector("#fleet-scroll").scrollTop = 0; renderVisibleRows(); });

  // Find the cabinet on the map: click where it is, zooming into clusters until it stands alone.
  for (let i = 0; i < 8 && !(await page.isVisible("#cabinet-view")); i++) {
    const at = await page.evaluate((sn) => {
      const r = app.fleet.get(sn);
      // The point that stands for it: itself, or the cluster whose cell holds it.
      const data = app.map.getOption().series[0].data;
      const d = data.find((d) => d.sn === sn) ||
        data.find((d) => d.cell && r.lng >= d.cell[0] && r.lng <= d.cell[1] && r.lat >= d.cell[2] && r.lat <= d.cell[3]);
      const [x, y] = app.map.convertToPixel({ seriesIndex: 0 }, d.value);
      const box = document.querySelector("#map").getBoundingClientRect();
      return { x: box.left + x, y: box.top + y };
    }, sn);
    await page.mouse.click(at.x, at.y);
    await page.waitForTimeout(400);
  }
  if (!(await page.isVisible("#cabinet-view"))) throw new Error("the cabinet was not found on the map");
  step("found-on-map");

  // A purchase on it while we watch.
  await page.waitForSelector("#lanes tr td");
  await page.waitForFunction(() => typeof app !== "undefined" && app.cabinet && app.cabinet.chart);
  const before = await page.evaluate(() => app.cabinet.times.length);
  step("watching");
  await waitLine(); // the test opens the door and takes
  await page.waitForFunction((n) => app.cabinet.times.length > n + 3, before, { timeout: 20000 });
  await page.waitForFunction(() => app.cabinet.snap.cabinet.session && app.cabinet.snap.cabinet.session.kind === "purchase");
  await page.waitForTimeout(600);
  await page.screenshot({ path: `${shots}/cabinet-purchase.png` });
  const points = await page.evaluate(() => app.cabinet.times.length);
  console.log(`CHART ${points}`);
  step("chart-moved");
  await waitLine(); // the door closed
  await page.waitForFunction(() => [...app.cabinet.orders.values()].some((o) => o.status === "paid"), null, { timeout: 20000 });
  step("paid-seen");

  // A review case: its trace, and a decision.
  await page.click('#nav button[data-view="reviews"]');
  await page.waitForSelector(`#reviews [data-review="${caseId}"]`);
  await page.click(`#reviews [data-review="${caseId}"]`);
  await page.waitForSelector("#review-trace canvas");
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${shots}/review.png` });
  await page.click('[data-decision="dismiss"]');
  await page.waitForFunction(() => document.querySelector("#review-result").textContent === "已处理");
  await page.waitForFunction((id) => !document.querySelector(`#reviews [data-review="${id}"]`), caseId);
  step("review-resolved");

  // The night's reconciliation, run by the test: the day's figures, a bill case to resolve.
  step("money");
  await waitLine();
  await page.click('#nav button[data-view="money"]');
  await page.waitForSelector("#money-chart canvas");
  await page.waitForSelector("#bill-cases [data-case]");
  const gross = await page.textContent('[data-figure="gross"] b');
  if (!/^¥[1-9]/.test(gross)) throw new Error(`the day's gross reads ${gross}`);
  console.log(`MONEY gross ${gross}`);
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${shots}/money.png` });
  const row = page.locator("#bill-cases [data-case]").first();
  await row.locator("[data-resolution]").selectOption("write_off");
  await row.locator("[data-note]").fill("手续费差 1 分，核销");
  await row.locator("[data-resolve]").click();
  await page.waitForFunction(() => document.querySelector("#case-result").textContent === "已处理");
  await page.waitForFunction(() => !document.querySelector("#bill-cases [data-case]"));
  step("case-resolved");

  // English, one click away.
  await page.click("#lang");
  const nav = await page.textContent('#nav button[data-view="fleet"]');
  if (nav !== "Fleet") throw new Error(`after switching, the fleet tab says ${nav}`);
  await page.click('#nav button[data-view="fleet"]');
  const label = await page.textContent('[data-count="total"] span');
  if (label !== "Cabinets") throw new Error(`after switching, the count says ${label}`);
  step("english");
} finally {
  await browser.close();
  lines.close();
}
