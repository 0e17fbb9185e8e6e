pub mod broker;
pub mod gateway;
pub mod load;
pub mod process;
