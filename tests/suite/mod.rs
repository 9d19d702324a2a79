mod errors;
mod flow;
mod lifecycle;
mod native;
mod native_guards;
mod schemas;
mod transport;
