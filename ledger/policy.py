"""The privacy policy in force (shared/policy/privacy-policy-2022-10-03.txt): attestations of
parental consent (AGE-1) name the version they were made under."""

CURRENT_POLICY_VERSION = "2022-10-03"
