//! The simulated WeChat Pay (API v3, Pay Score) and mini-program login.

use actix_web::web;

use crate::config::WechatConfig;
use crate::pay::sim::SimError;

pub struct WechatSim {}

impl WechatSim {
    pub fn new(_config: &WechatConfig) -> Result<WechatSim, SimError> {
        Ok(WechatSim {})
    }
}

pub fn routes(_cfg: &mut web::ServiceConfig) {}
