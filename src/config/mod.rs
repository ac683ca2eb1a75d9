//! main.cf and the parameters oqmgr reads (placeholder: being written)
