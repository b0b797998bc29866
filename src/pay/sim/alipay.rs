//! The simulated Alipay (gateway.do, fund-auth pre-authorisation) and mini-program login.

use actix_web::web;

use crate::config::AlipayConfig;
use crate::pay::sim::SimError;

pub struct AlipaySim {}

impl AlipaySim {
    pub fn new(_config: &AlipayConfig) -> Result<AlipaySim, SimError> {
        Ok(AlipaySim {})
    }
}

pub fn routes(_cfg: &mut web::ServiceConfig) {}
