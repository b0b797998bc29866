//! A shopper's account: the payment channels they have bound, what they owe, whether they may buy.

/// The channel a WeChat mini-program login binds: WeChat Pay Score.
pub const WECHAT_PAYSCORE: &str = "wechat_payscore";
/// The channel an Alipay mini-program login binds: Alipay fund-auth pre-authorisation.
pub const ALIPAY_FUND_AUTH: &str = "alipay_fund_auth";

/// The bound channels, as stored (comma-separated).
pub fn channels(stored: &str) -> Vec<&str> {
    stored.split(',').map(str::trim).filter(|c| !c.is_empty()).collect()
}

/// `stored` with `channel` bound: sorted, each once.
pub fn bind(stored: &str, channel: &str) -> String {
    let mut all = channels(stored);
    all.push(channel);
    all.sort_unstable();
    all.dedup();
    all.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_is_sorted_and_once() {
        assert_eq!(bind("", WECHAT_PAYSCORE), "wechat_payscore");
        assert_eq!(bind("wechat_payscore", ALIPAY_FUND_AUTH), "alipay_fund_auth,wechat_payscore");
        assert_eq!(bind("alipay_fund_auth,wechat_payscore", WECHAT_PAYSCORE), "alipay_fund_auth,wechat_payscore");
        assert_eq!(channels(" a, ,b"), vec!["a", "b"]);
    }
}
