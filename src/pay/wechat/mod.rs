//! WeChat Pay Score over API v3.
