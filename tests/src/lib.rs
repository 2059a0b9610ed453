//! Helpers for driving a compose project of the stack from tests.
