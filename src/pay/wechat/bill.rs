//! The v3 trade bill (交易账单), type `ALL` (reference §4.3): build (for the simulator), parse,
//! SHA1, gzip. Pure.

use std::io::{Read, Write};

use chrono::NaiveDateTime;
use sha1::{Digest, Sha1};

use crate::domain::bills::BillTotals;
use crate::domain::units::Fen;
use crate::pay::{BillRow, fee_to_fen, fen_to_yuan, yuan_to_fen};

/// The 27 detail columns of an `ALL` bill.
pub const DETAIL_HEADERS: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];

/// The 7 summary columns of an `ALL` bill.
pub const SUMMARY_HEADERS: [&str; 7] =
    ["总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额", "订单总金额", "申请退款总金额"];

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    #[error("bill is not UTF-8")]
    Encoding,
    #[error("bill has no detail header")]
    NoHeader,
    #[error("bill header lacks column {0}")]
    MissingColumn(&'static str),
    #[error("bill line {line}: {message}")]
    Row { line: usize, message: String },
    #[error("bill gzip: {0}")]
    Gzip(String),
}

/// One payment row the simulator writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    pub time: NaiveDateTime,
    pub appid: String,
    pub mchid: String,
    pub transaction_id: String,
    /// 商户订单号 (WeChat-generated for Pay Score deductions).
    pub trade_no: String,
    pub openid: String,
    /// 交易类型: `AUTH` for Pay Score deductions.
    pub trade_type: String,
    pub amount_fen: i64,
    pub fee_fen: i64,
    pub product: String,
    /// 商户数据包: `wxzff|<order_id>|<out_order_no>` for Pay Score.
    pub attach: String,
    /// A refund row (交易状态 REFUND) of this payment, rather than the payment.
    pub refund: Option<BillRefund>,
}

/// What a refund row adds: WeChat's and the merchant's refund numbers and the amount back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRefund {
    pub refund_id: String,
    pub out_refund_no: String,
    pub amount_fen: i64,
}

/// The fee at 0.60 %, rounded half up to the fen.
pub fn fee_fen(amount_fen: i64) -> i64 {
    crate::domain::bills::fee(crate::domain::units::Fen(amount_fen), 60).0
}

// A bill value cannot contain the separators: the platform escapes them; we replace them.
fn clean(s: &str) -> String {
    s.replace([',', '\r', '\n', '`'], " ")
}

/// A fee as the bill writes it: yuan with six decimals, signed.
fn fee_text(fee_fen: i64) -> String {
    match fee_fen {
        f if f < 0 => format!("-{}000", fen_to_yuan(-f)),
        f => format!("{}000", fen_to_yuan(f)),
    }
}

/// One bill row, each field behind the back quote the platform puts before it.
fn row(fields: &[String]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| format!("`{f}")).collect();
    quoted.join(",") + "\r\n"
}

/// The detail row of one line: a payment, or a refund (nothing settled, the amount back in
/// 退款金额, the fee given back).
fn detail_row(l: &BillLine) -> String {
    let (settled, status, refund) = match &l.refund {
        None => (l.amount_fen, "SUCCESS", ["0".to_string(), "0".into(), "0.00".into(), String::new(), String::new()]),
        Some(r) => (
            0,
            "REFUND",
            [
                clean(&r.refund_id),
                clean(&r.out_refund_no),
                fen_to_yuan(r.amount_fen),
                "ORIGINAL".into(),
                "SUCCESS".into(),
            ],
        ),
    };
    let amount = fen_to_yuan(settled);
    let [refund_id, out_refund_no, refund_amount, refund_type, refund_status] = refund;
    row(&[
        l.time.format(TIME_FORMAT).to_string(),
        clean(&l.appid),
        clean(&l.mchid),
        "0".into(),
        String::new(),
        clean(&l.transaction_id),
        clean(&l.trade_no),
        clean(&l.openid),
        clean(&l.trade_type),
        status.into(),
        "OTHERS".into(),
        "CNY".into(),
        amount.clone(),
        "0.00".into(),
        refund_id,
        out_refund_no,
        refund_amount.clone(),
        "0.00".into(),
        refund_type,
        refund_status,
        clean(&l.product),
        clean(&l.attach),
        fee_text(l.fee_fen),
        "0.60%".into(),
        amount,
        if l.refund.is_some() { refund_amount } else { "0.00".into() },
        String::new(),
    ])
}

/// Build an `ALL` bill with `\r\n` line ends (as real downloads show).
pub fn build(lines: &[BillLine]) -> String {
    let mut out = DETAIL_HEADERS.join(",") + "\r\n";
    for l in lines {
        out.push_str(&detail_row(l));
    }
    let total: i64 = lines.iter().filter(|l| l.refund.is_none()).map(|l| l.amount_fen).sum();
    let refunded: i64 = lines.iter().filter_map(|l| l.refund.as_ref()).map(|r| r.amount_fen).sum();
    let fees: i64 = lines.iter().map(|l| l.fee_fen).sum();
    out.push_str(&(SUMMARY_HEADERS.join(",") + "\r\n"));
    out.push_str(&row(&[
        lines.len().to_string(),
        fen_to_yuan(total),
        fen_to_yuan(refunded),
        "0.00".into(),
        fee_text(fees),
        fen_to_yuan(total),
        fen_to_yuan(refunded),
    ]));
    out
}

/// SHA1 hex (lower case) of the bytes: `hash_value` of the uncompressed CSV.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>, BillError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).map_err(|e| BillError::Gzip(e.to_string()))?;
    enc.finish().map_err(|e| BillError::Gzip(e.to_string()))
}

pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, BillError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| BillError::Gzip(e.to_string()))?;
    Ok(out)
}

fn field(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('`').unwrap_or(s)
}

/// A signed amount printed with up to five decimals (fees, refunds) → fen.
fn signed_fee(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(rest) => fee_to_fen(rest).map(|f| -f),
        None => fee_to_fen(s),
    }
}

/// The totals an `ALL` bill states in its summary rows; `None` when it has none.
pub fn totals(bytes: &[u8]) -> Result<Option<BillTotals>, BillError> {
    let text = std::str::from_utf8(bytes).map_err(|_| BillError::Encoding)?;
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).enumerate();
    if !lines.any(|(_, l)| l.split(',').next().map(field) == Some(SUMMARY_HEADERS[0])) {
        return Ok(None);
    }
    let Some((i, line)) = lines.find(|(_, l)| !l.trim().is_empty()) else { return Ok(None) };
    let f: Vec<&str> = line.split(',').map(field).collect();
    let bad = |what: &str| BillError::Row { line: i + 1, message: format!("summary {what}") };
    let get = |n: usize| f.get(n).copied().ok_or_else(|| bad("is short"));
    Ok(Some(BillTotals {
        rows: get(0)?.parse().map_err(|_| bad("总交易单数"))?,
        payments_fen: Fen(yuan_to_fen(get(1)?).ok_or_else(|| bad("应结订单总金额"))?),
        refunds_fen: Fen(yuan_to_fen(get(2)?).ok_or_else(|| bad("退款总金额"))?),
        fee_fen: Some(Fen(signed_fee(get(4)?).ok_or_else(|| bad("手续费总金额"))?)),
    }))
}

/// Parse an `ALL` bill: detail rows into [`BillRow`]s, columns found by header name.
pub fn parse(bytes: &[u8]) -> Result<Vec<BillRow>, BillError> {
    let text = std::str::from_utf8(bytes).map_err(|_| BillError::Encoding)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines =
        text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else { return Err(BillError::NoHeader) };
    let names: Vec<&str> = header.split(',').map(field).collect();
    let col = |name: &'static str| names.iter().position(|n| *n == name).ok_or(BillError::MissingColumn(name));
    let c_time = col("交易时间")?;
    let c_txn = col("微信订单号")?;
    let c_trade_no = col("商户订单号")?;
    let c_status = col("交易状态")?;
    let c_amount = col("应结订单金额")?;
    let c_refund = col("退款金额")?;
    let c_attach = col("商户数据包")?;
    let c_fee = col("手续费")?;
    let mut rows = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').map(field).collect();
        // The summary header ends the details.
        if fields.first().is_some_and(|f| *f == SUMMARY_HEADERS[0]) {
            break;
        }
        let row_err = |message: String| BillError::Row { line: i + 1, message };
        if fields.len() < names.len() {
            return Err(row_err(format!("{} fields, header has {}", fields.len(), names.len())));
        }
        let time = NaiveDateTime::parse_from_str(fields[c_time], TIME_FORMAT)
            .map_err(|e| row_err(format!("交易时间 {:?}: {e}", fields[c_time])))?;
        let status = fields[c_status].to_string();
        let amount_fen = if status == "REFUND" {
            -yuan_to_fen(fields[c_refund]).ok_or_else(|| row_err(format!("退款金额 {:?}", fields[c_refund])))?
        } else {
            yuan_to_fen(fields[c_amount]).ok_or_else(|| row_err(format!("应结订单金额 {:?}", fields[c_amount])))?
        };
        let fee_fen = signed_fee(fields[c_fee]).ok_or_else(|| row_err(format!("手续费 {:?}", fields[c_fee])))?;
        // Pay Score deductions carry Heft's number in the attach: wxzff|<order_id>|<out_order_no>.
        let attach = fields[c_attach];
        let out_order_no = match attach.strip_prefix("wxzff|").and_then(|r| r.split('|').nth(1)) {
            Some(no) if !no.is_empty() => no.to_string(),
            _ => fields[c_trade_no].to_string(),
        };
        rows.push(BillRow {
            transaction_id: fields[c_txn].to_string(),
            out_order_no,
            amount_fen,
            fee_fen,
            status,
            time,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_G: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n`2025-01-01 12:05:10,`wxd678efh567hg6787,`1230000109,`0,`,`4200002500202501011234567890,`PS2025010112051000000001,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`AUTH,`SUCCESS,`OTHERS,`CNY,`12.50,`0.00,`0,`0,`0.00,`0.00,`,`,`智能售货柜购物,`wxzff|1000000000201905131342000000000001|VC20250101120000A1B2,`0.08000,`0.60%,`12.50,`0.00,`\r\n总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n`1,`12.50,`0.00,`0.00,`0.08000,`12.50,`0.00\r\n";

    fn g_line() -> BillLine {
        BillLine {
            time: NaiveDateTime::parse_from_str("2025-01-01 12:05:10", TIME_FORMAT).expect("time"),
            appid: "wxd678efh567hg6787".into(),
            mchid: "1230000109".into(),
            transaction_id: "4200002500202501011234567890".into(),
            trade_no: "PS2025010112051000000001".into(),
            openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
            trade_type: "AUTH".into(),
            amount_fen: 1250,
            fee_fen: fee_fen(1250),
            product: "智能售货柜购物".into(),
            attach: "wxzff|1000000000201905131342000000000001|VC20250101120000A1B2".into(),
            refund: None,
        }
    }

    #[test]
    fn refund_rows_round_trip() {
        let refund = BillLine {
            fee_fen: -fee_fen(500),
            refund: Some(BillRefund {
                refund_id: "50300202501011".into(),
                out_refund_no: "VC1R1".into(),
                amount_fen: 500,
            }),
            ..g_line()
        };
        let csv = build(&[g_line(), refund]);
        let rows = parse(csv.as_bytes()).expect("parse");
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].status.as_str(), rows[1].amount_fen, rows[1].fee_fen), ("REFUND", -500, -3));
        assert_eq!(rows[1].out_order_no, "VC20250101120000A1B2");
        assert!(csv.contains("`2,`12.50,`5.00,`"), "summary: rows, settled, refunded: {csv}");
        let stated = totals(csv.as_bytes()).expect("totals").expect("a summary");
        assert_eq!(
            stated,
            BillTotals { rows: 2, payments_fen: Fen(1250), refunds_fen: Fen(500), fee_fen: Some(Fen(8 - 3)) }
        );
        assert_eq!(totals(csv.split("总交易单数").next().expect("details").as_bytes()).expect("no summary"), None);
    }

    #[test]
    fn example_g_parses_and_hashes() {
        assert_eq!(sha1_hex(EXAMPLE_G.as_bytes()), "c9a7b4fa77bd5db1c4cd398c8f68784cf1382aad");
        let rows = parse(EXAMPLE_G.as_bytes()).expect("parse");
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.transaction_id, "4200002500202501011234567890");
        assert_eq!(r.out_order_no, "VC20250101120000A1B2");
        assert_eq!((r.amount_fen, r.fee_fen), (1250, 8));
        assert_eq!(r.status, "SUCCESS");
        assert_eq!(r.time.to_string(), "2025-01-01 12:05:10");
    }

    #[test]
    fn example_g_is_what_build_writes() {
        assert_eq!(build(&[g_line()]), EXAMPLE_G);
    }

    #[test]
    fn lf_bom_gzip_and_attach_fallback() {
        let lf = format!(
            "\u{feff}{}",
            EXAMPLE_G
                .replace("\r\n", "\n")
                .replace("wxzff|1000000000201905131342000000000001|VC20250101120000A1B2", "session-7")
        );
        let rows = parse(lf.as_bytes()).expect("parse");
        assert_eq!(rows[0].out_order_no, "PS2025010112051000000001");
        let gz = gzip(EXAMPLE_G.as_bytes()).expect("gzip");
        assert_eq!(gunzip(&gz).expect("gunzip"), EXAMPLE_G.as_bytes());
        // Columns are found by name: swap two columns in header and row alike.
        let swap = |line: &str| {
            let mut f: Vec<&str> = line.split(',').collect();
            if f.len() == 27 {
                f.swap(5, 12);
            }
            f.join(",")
        };
        let swapped: Vec<String> = EXAMPLE_G.split("\r\n").map(swap).collect();
        assert_eq!(parse(swapped.join("\r\n").as_bytes()).expect("parse"), parse(EXAMPLE_G.as_bytes()).expect("parse"));
        assert_eq!(parse(b"").unwrap_err(), BillError::NoHeader);
        assert_eq!(parse("交易时间,x\n".as_bytes()).unwrap_err(), BillError::MissingColumn("微信订单号"));
        assert!(parse(b"\xff\xfe").is_err());
    }

    #[test]
    fn empty_bill_round_trips() {
        assert_eq!(parse(build(&[]).as_bytes()).expect("parse"), vec![]);
    }

    proptest::proptest! {
        #[test]
        fn build_parse_round_trips(
            rows in proptest::collection::vec((0i64..10_000_000, "[A-Za-z0-9_-]{1,32}", 0u32..86_400, "[^,`\r\n]{0,20}"), 0..20)
        ) {
            let base = NaiveDateTime::parse_from_str("2025-01-01 00:00:00", TIME_FORMAT).expect("time");
            let lines: Vec<BillLine> = rows.iter().enumerate().map(|(i, (amount, no, secs, product))| BillLine {
                time: base + chrono::Duration::seconds(i64::from(*secs)),
                transaction_id: format!("42000025002025010100000{i:05}"),
                amount_fen: *amount,
                fee_fen: fee_fen(*amount),
                product: product.clone(),
                attach: format!("wxzff|1000{i}|{no}"),
                ..g_line()
            }).collect();
            let parsed = parse(build(&lines).as_bytes()).expect("parse");
            proptest::prop_assert_eq!(parsed.len(), lines.len());
            for (p, l) in parsed.iter().zip(&lines) {
                proptest::prop_assert_eq!(&p.transaction_id, &l.transaction_id);
                proptest::prop_assert_eq!(p.out_order_no.as_str(), l.attach.rsplit('|').next().unwrap_or_default());
                proptest::prop_assert_eq!((p.amount_fen, p.fee_fen, p.time), (l.amount_fen, l.fee_fen, l.time));
            }
        }
    }
}
