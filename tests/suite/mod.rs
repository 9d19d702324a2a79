mod cli;
mod errors;
mod flow;
mod lifecycle;
mod nodes;
mod schemas;
mod transport;
