//! The Alipay trade bill (reference §5.7): a ZIP of two GBK CSV files, `<account>_<yyyyMMdd>_业务明细.csv`
//! (one row per trade or refund) and `…_业务明细(汇总).csv` (totals). Built here for the simulator
//! and parsed for reconciliation. The layout is community-documented only, so the parser finds
//! the detail file by its markers and the columns by their header names, not by position.

use std::io::{Cursor, Read, Write};

use chrono::{NaiveDate, NaiveDateTime};

use crate::domain::bills::BillTotals;
use crate::domain::units::Fen;
use crate::pay::{BillRow, fee_to_fen, fen_to_yuan, yuan_to_fen};

#[derive(Debug, thiserror::Error)]
pub enum BillError {
    #[error("bill ZIP: {0}")]
    Zip(String),
    #[error("bill has no 业务明细 file")]
    NoDetail,
    #[error("bill header lacks column {0}")]
    MissingColumn(&'static str),
    #[error("bill line {line}: {message}")]
    Row { line: usize, message: String },
    #[error("bill totals line unreadable: {0}")]
    Totals(String),
}

const START: &str = "业务明细列表";
const END: &str = "业务明细列表结束";
const TIME: &str = "%Y-%m-%d %H:%M:%S";

/// The 25 columns of the 业务明细 file, in order.
pub const COLUMNS: [&str; 25] = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
];

/// One trade or refund, with what the file shows beyond a [`BillRow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    pub trade_no: String,
    pub out_trade_no: String,
    /// 交易 or 退款.
    pub kind: String,
    pub subject: String,
    pub created: NaiveDateTime,
    pub finished: NaiveDateTime,
    /// 对方账户 (masked logon id).
    pub buyer: String,
    /// Negative for a refund.
    pub amount_fen: i64,
    pub fee_fen: i64,
    /// 退款批次号/请求号, refunds only.
    pub refund_no: String,
}

impl BillLine {
    pub fn to_row(&self) -> BillRow {
        BillRow {
            transaction_id: self.trade_no.clone(),
            out_order_no: self.out_trade_no.clone(),
            amount_fen: self.amount_fen,
            fee_fen: self.fee_fen,
            status: self.kind.clone(),
            time: self.finished,
        }
    }
}

/// A signed fee with up to five decimals → fen (the file may print the fee negative).
fn signed_fee_to_fen(s: &str) -> Option<i64> {
    let s = s.trim();
    match s.strip_prefix('-') {
        Some(rest) => fee_to_fen(rest).map(|f| -f),
        None => fee_to_fen(s),
    }
}

fn cn_datetime(t: NaiveDateTime) -> String {
    t.format("%Y年%m月%d日 %H:%M:%S").to_string()
}

/// The 业务明细 CSV text (before GBK encoding), CRLF line ends.
pub fn detail_csv(account: &str, date: NaiveDate, lines: &[BillLine], exported: NaiveDateTime) -> String {
    let from = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    let to = from + chrono::Duration::days(1);
    let mut out: Vec<String> = vec![
        "#支付宝业务明细查询".into(),
        format!("#账号：[{account}]"),
        format!("#起始日期：[{}]   终止日期：[{}]", cn_datetime(from), cn_datetime(to)),
        format!("#-----------------------------------------{START}----------------------------------------"),
        COLUMNS.join(","),
    ];
    let (mut trades, mut trade_sum, mut refunds, mut refund_sum) = (0, 0i64, 0, 0i64);
    for l in lines {
        if l.amount_fen < 0 {
            refunds += 1;
            refund_sum += l.amount_fen;
        } else {
            trades += 1;
            trade_sum += l.amount_fen;
        }
        let amount = fen_to_yuan(l.amount_fen);
        let fields: [String; 25] = [
            l.trade_no.clone(),
            l.out_trade_no.clone(),
            l.kind.clone(),
            l.subject.replace(',', " "),
            l.created.format(TIME).to_string(),
            l.finished.format(TIME).to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            l.buyer.clone(),
            amount.clone(),
            amount,
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            String::new(),
            "0.00".into(),
            "0.00".into(),
            l.refund_no.clone(),
            fen_to_yuan(l.fee_fen),
            "0.00".into(),
            String::new(),
        ];
        // The real files pad values with tabs and spaces; so does this one, so parsers must trim.
        out.push(fields.iter().map(|f| format!("{f}\t")).collect::<Vec<_>>().join(","));
    }
    out.push(format!("#-----------------------------------------{END}------------------------------------"));
    out.push(format!("#交易合计：{trades}笔，商家实收共{}元，商家优惠共0.00元", fen_to_yuan(trade_sum)));
    out.push(format!("#退款合计：{refunds}笔，商家实收退款共{}元，商家优惠退款共0.00元", fen_to_yuan(refund_sum)));
    out.push(format!("#导出时间：[{}]", cn_datetime(exported)));
    out.join("\r\n") + "\r\n"
}

/// The 业务明细(汇总) CSV text: one totals row.
pub fn summary_csv(account: &str, date: NaiveDate, lines: &[BillLine], exported: NaiveDateTime) -> String {
    let from = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    let to = from + chrono::Duration::days(1);
    let trades = lines.iter().filter(|l| l.amount_fen >= 0).count();
    let refunds = lines.len() - trades;
    let total: i64 = lines.iter().map(|l| l.amount_fen).sum();
    let fees: i64 = lines.iter().map(|l| l.fee_fen).sum();
    [
        "#支付宝业务汇总查询".to_string(),
        format!("#账号：[{account}]"),
        format!("#起始日期：[{}]   终止日期：[{}]", cn_datetime(from), cn_datetime(to)),
        "#-----------------------------------------业务汇总列表----------------------------------------".into(),
        "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）".into(),
        format!(
            "合计,,{trades},{refunds},{t},{t},0.00,0.00,0.00,{f},0.00,{n}",
            t = fen_to_yuan(total),
            f = fen_to_yuan(fees),
            n = fen_to_yuan(total - fees)
        ),
        "#-----------------------------------------业务汇总列表结束------------------------------------".into(),
        format!("#导出时间：[{}]", cn_datetime(exported)),
    ]
    .join("\r\n")
        + "\r\n"
}

fn gbk(text: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(text).0.into_owned()
}

/// The bill ZIP the platform serves for `date`.
pub fn build_zip(
    account: &str,
    date: NaiveDate,
    lines: &[BillLine],
    exported: NaiveDateTime,
) -> Result<Vec<u8>, BillError> {
    let stem = format!("{account}_{}", date.format("%Y%m%d"));
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let z = |e: zip::result::ZipError| BillError::Zip(e.to_string());
    for (name, text) in [
        (format!("{stem}_业务明细.csv"), detail_csv(account, date, lines, exported)),
        (format!("{stem}_业务明细(汇总).csv"), summary_csv(account, date, lines, exported)),
    ] {
        zip.start_file(name, options).map_err(z)?;
        zip.write_all(&gbk(&text)).map_err(|e| BillError::Zip(e.to_string()))?;
    }
    Ok(zip.finish().map_err(z)?.into_inner())
}

/// Parse a downloaded bill ZIP into its trade and refund rows.
pub fn parse_zip(bytes: &[u8]) -> Result<Vec<BillRow>, BillError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| BillError::Zip(e.to_string()))?;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| BillError::Zip(e.to_string()))?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).map_err(|e| BillError::Zip(e.to_string()))?;
        // File names may be GBK without the UTF-8 flag; the content's markers are reliable.
        let (text, _, _) = encoding_rs::GBK.decode(&raw);
        if text.lines().any(|l| l.starts_with('#') && l.contains(START) && !l.contains(END)) {
            return parse_detail(&text);
        }
    }
    Err(BillError::NoDetail)
}

/// The totals a bill ZIP states: rows and amounts from the 业务明细's 合计 lines, fees from the
/// 业务明细(汇总)'s 合计 row. `None` when the details state none.
pub fn totals_zip(bytes: &[u8]) -> Result<Option<BillTotals>, BillError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| BillError::Zip(e.to_string()))?;
    let (mut totals, mut fee) = (None, None);
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| BillError::Zip(e.to_string()))?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).map_err(|e| BillError::Zip(e.to_string()))?;
        let (text, _, _) = encoding_rs::GBK.decode(&raw);
        for line in text.lines().map(|l| l.trim_end_matches('\r')) {
            if let Some(rest) = line.strip_prefix("#交易合计：") {
                let t = totals.get_or_insert(BillTotals::default());
                let (n, fen) = footer(rest).ok_or_else(|| BillError::Totals(line.to_string()))?;
                (t.rows, t.payments_fen) = (t.rows + n, Fen(fen));
            } else if let Some(rest) = line.strip_prefix("#退款合计：") {
                let t = totals.get_or_insert(BillTotals::default());
                let (n, fen) = footer(rest).ok_or_else(|| BillError::Totals(line.to_string()))?;
                (t.rows, t.refunds_fen) = (t.rows + n, Fen(fen.abs()));
            } else if line.starts_with("合计,") {
                let f: Vec<&str> = line.split(',').map(str::trim).collect();
                fee = f.get(9).and_then(|s| yuan_to_fen(s)).map(Fen);
                if fee.is_none() {
                    return Err(BillError::Totals(line.to_string()));
                }
            }
        }
    }
    Ok(totals.map(|t| BillTotals { fee_fen: fee, ..t }))
}

/// `3笔，商家实收共12.50元，…` → (3, 1250).
fn footer(rest: &str) -> Option<(i64, i64)> {
    let (count, rest) = rest.split_once('笔')?;
    let amount = rest.split_once('共')?.1.split_once('元')?.0;
    Some((count.trim().parse().ok()?, yuan_to_fen(amount)?))
}

/// Parse the 业务明细 CSV text (already decoded).
pub fn parse_detail(text: &str) -> Result<Vec<BillRow>, BillError> {
    let mut rows = Vec::new();
    let mut in_list = false;
    let mut header: Option<Columns> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') {
            if line.contains(END) {
                break;
            }
            if line.contains(START) {
                in_list = true;
            }
            continue;
        }
        if !in_list || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(|f| f.trim()).collect();
        match &header {
            None => header = Some(Columns::find(&fields)?),
            Some(c) => rows.push(c.row(&fields).map_err(|message| BillError::Row { line: n + 1, message })?),
        }
    }
    Ok(rows)
}

struct Columns {
    trade_no: usize,
    out_trade_no: usize,
    kind: usize,
    finished: usize,
    amount: usize,
    fee: usize,
}

impl Columns {
    fn find(header: &[&str]) -> Result<Columns, BillError> {
        let at = |name: &'static str| header.iter().position(|h| *h == name).ok_or(BillError::MissingColumn(name));
        Ok(Columns {
            trade_no: at("支付宝交易号")?,
            out_trade_no: at("商户订单号")?,
            kind: at("业务类型")?,
            finished: at("完成时间")?,
            amount: at("订单金额（元）")?,
            fee: at("服务费（元）")?,
        })
    }

    fn row(&self, f: &[&str]) -> Result<BillRow, String> {
        let get = |i: usize| f.get(i).copied().ok_or_else(|| format!("only {} fields", f.len()));
        let amount = get(self.amount)?;
        let fee = get(self.fee)?;
        let time = get(self.finished)?;
        Ok(BillRow {
            transaction_id: get(self.trade_no)?.to_string(),
            out_order_no: get(self.out_trade_no)?.to_string(),
            amount_fen: yuan_to_fen(amount).ok_or_else(|| format!("amount {amount:?}"))?,
            fee_fen: signed_fee_to_fen(fee).ok_or_else(|| format!("fee {fee:?}"))?,
            status: get(self.kind)?.to_string(),
            time: NaiveDateTime::parse_from_str(time, TIME).map_err(|e| format!("time {time:?}: {e}"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, TIME).expect("time")
    }

    fn lines() -> Vec<BillLine> {
        vec![
            BillLine {
                trade_no: "2025010122001400001000000001".into(),
                out_trade_no: "AP20250101120300C7".into(),
                kind: "交易".into(),
                subject: "智能售货柜购物".into(),
                created: t("2025-01-01 12:03:00"),
                finished: t("2025-01-01 12:03:01"),
                buyer: "158****7723".into(),
                amount_fen: 1250,
                fee_fen: 8,
                refund_no: String::new(),
            },
            BillLine {
                trade_no: "2025010122001400001000000001".into(),
                out_trade_no: "AP20250101120300C7".into(),
                kind: "退款".into(),
                subject: "智能售货柜购物".into(),
                created: t("2025-01-01 12:03:00"),
                finished: t("2025-01-01 18:00:00"),
                buyer: "158****7723".into(),
                amount_fen: -300,
                fee_fen: -2,
                refund_no: "R1".into(),
            },
        ]
    }

    #[test]
    fn build_then_parse_round_trips() {
        let date = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
        let zip = build_zip("20881020002757950156", date, &lines(), t("2025-01-02 06:27:10")).expect("zip");
        let rows = parse_zip(&zip).expect("parses");
        assert_eq!(rows, lines().iter().map(BillLine::to_row).collect::<Vec<_>>());

        // The names and the encoding are as documented.
        let mut archive = zip::ZipArchive::new(Cursor::new(&zip)).expect("zip");
        let names: Vec<String> = archive.file_names().map(|n| n.expect("name").to_string()).collect();
        assert!(names.contains(&"20881020002757950156_20250101_业务明细.csv".to_string()), "{names:?}");
        assert!(names.contains(&"20881020002757950156_20250101_业务明细(汇总).csv".to_string()), "{names:?}");
        let mut raw = Vec::new();
        archive
            .by_name("20881020002757950156_20250101_业务明细.csv")
            .expect("file")
            .read_to_end(&mut raw)
            .expect("read");
        assert!(std::str::from_utf8(&raw).is_err(), "GBK, not UTF-8");
        let (text, _, bad) = encoding_rs::GBK.decode(&raw);
        assert!(!bad);
        assert!(text.contains("\r\n#交易合计：1笔，商家实收共12.50元"), "{text}");
        let stated = totals_zip(&zip).expect("totals").expect("stated");
        assert_eq!(
            stated,
            BillTotals { rows: 2, payments_fen: Fen(1250), refunds_fen: Fen(300), fee_fen: Some(Fen(8 - 2)) }
        );
    }

    #[test]
    fn empty_day_parses_to_nothing() {
        let date = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
        let zip = build_zip("20881020002757950156", date, &[], t("2025-01-02 06:27:10")).expect("zip");
        assert_eq!(parse_zip(&zip).expect("parses"), vec![]);
    }

    #[test]
    fn hand_written_sample_parses() {
        let sample = "#支付宝业务明细查询\r\n\
#账号：[20881020002757950156]\r\n\
#起始日期：[2025年01月01日 00:00:00]   终止日期：[2025年01月02日 00:00:00]\r\n\
#-----------------------------------------业务明细列表----------------------------------------\r\n\
支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注\r\n\
2025010122001400001000000001\t,AP20250101120300C7\t,交易      ,智能售货柜购物\t,2025-01-01 12:03:00,2025-01-01 12:03:01,,,,,158****7723  ,12.50   ,12.50,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.07500,0.00,\r\n\
2025010122001400001000000002\t,AP20250101130000D1\t,退款      ,智能售货柜购物\t,2025-01-01 13:00:00,2025-01-01 13:05:00,,,,,158****7723  ,-3.00   ,-3.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,AP20250101130000D1R1  ,0.02,0.00,\r\n\
#-----------------------------------------业务明细列表结束------------------------------------\r\n\
#交易合计：1笔，商家实收共12.50元，商家优惠共0.00元\r\n\
#退款合计：1笔，商家实收退款共-3.00元，商家优惠退款共0.00元\r\n\
#导出时间：[2025年01月02日 06:27:10]\r\n";
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("20881020002757950156_20250101_业务明细.csv", zip::write::SimpleFileOptions::default())
            .expect("start");
        zip.write_all(&gbk(sample)).expect("write");
        let bytes = zip.finish().expect("finish").into_inner();
        let rows = parse_zip(&bytes).expect("parses");
        assert_eq!(
            rows,
            vec![
                BillRow {
                    transaction_id: "2025010122001400001000000001".into(),
                    out_order_no: "AP20250101120300C7".into(),
                    amount_fen: 1250,
                    fee_fen: -8,
                    status: "交易".into(),
                    time: t("2025-01-01 12:03:01"),
                },
                BillRow {
                    transaction_id: "2025010122001400001000000002".into(),
                    out_order_no: "AP20250101130000D1".into(),
                    amount_fen: -300,
                    fee_fen: 2,
                    status: "退款".into(),
                    time: t("2025-01-01 13:05:00"),
                },
            ]
        );
    }

    #[test]
    fn missing_detail_or_bad_rows_are_errors() {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("x.csv", zip::write::SimpleFileOptions::default()).expect("start");
        zip.write_all(b"nothing").expect("write");
        let bytes = zip.finish().expect("finish").into_inner();
        assert!(matches!(parse_zip(&bytes), Err(BillError::NoDetail)));
        assert!(matches!(parse_zip(b"not a zip"), Err(BillError::Zip(_))));
        let text = format!("#{START}\r\n支付宝交易号,商户订单号\r\n");
        assert!(matches!(parse_detail(&text), Err(BillError::MissingColumn(_))));
        let text = format!("#{START}\r\n{}\r\n1,2,交易,x,t,bad-time\r\n", COLUMNS.join(","));
        assert!(matches!(parse_detail(&text), Err(BillError::Row { line: 3, .. })));
    }
}
