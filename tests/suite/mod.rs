mod acp;
mod architecture;
mod errors;
mod flow;
mod lifecycle;
mod real_agents;
mod schemas;
mod transport;
