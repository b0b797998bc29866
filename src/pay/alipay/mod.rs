//! Alipay fund-auth pre-authorisation over the Open Platform gateway.
