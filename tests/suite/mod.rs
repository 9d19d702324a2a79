mod acp;
mod errors;
mod flow;
mod lifecycle;
mod schemas;
mod transport;
