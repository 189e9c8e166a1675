//! Integration tests of meridian-tenancy.
