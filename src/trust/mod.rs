//! PURE: IAM policy documents, the trust-policy compiler and the condition evaluator.
