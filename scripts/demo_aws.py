#!/usr/bin/env python3
"""The AWS side of scripts/demo.sh: boto3 calls to the verifying STS (scripts/verifying-sts.sh),
signed with its admin keys. Each command prints what the demo shows as evidence.

    demo_aws.py issuer-bucket BUCKET PREFIX POLICY   the issuer's bucket; POLICY (a file, with
                                                     BUCKET and PREFIX in it) lets anyone read
                                                     the two issuer documents
    demo_aws.py role NAME DATA_BUCKET                a role trusting an unrelated EC2 statement,
                                                     allowed s3:PutObject/GetObject in
                                                     DATA_BUCKET (created too) by a managed
                                                     policy NAME-data
    demo_aws.py provider ISSUER                      the OIDC provider of ISSUER: ARN, client IDs,
                                                     thumbprints (exit 1 while there is none)
    demo_aws.py trust-policy ROLE                    the role's trust policy, pretty-printed

Environment: AWS_ENDPOINT_URL (the verifier, or the dialect proxy in front of it),
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the verifier's admin), AWS_REGION.
"""

import json
import os
import sys
import urllib.parse

import boto3
import botocore.config

PATH_STYLE = botocore.config.Config(s3={"addressing_style": "path"})


def client(service):
    config = PATH_STYLE if service == "s3" else None
    return boto3.client(service, region_name=os.environ.get("AWS_REGION", "us-east-1"), config=config)


def issuer_bucket(bucket, prefix, policy_file):
    s3 = client("s3")
    s3.create_bucket(Bucket=bucket)
    with open(policy_file, encoding="utf-8") as f:
        policy = f.read().replace("BUCKET", bucket).replace("PREFIX", prefix)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    for statement in json.loads(policy)["Statement"]:
        for resource in statement["Resource"]:
            print(f"{statement['Effect']} {statement['Action']} to {statement['Principal']} on {resource}")


def role(name, data_bucket):
    iam = client("iam")
    unrelated = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Ec2",
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(unrelated))
    permissions = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{data_bucket}/*"],
            }
        ],
    }
    # A managed policy: the verifier's IAM has no inline role policies (PutRolePolicy).
    policy = iam.create_policy(PolicyName=f"{name}-data", PolicyDocument=json.dumps(permissions))
    iam.attach_role_policy(RoleName=name, PolicyArn=policy["Policy"]["Arn"])
    client("s3").create_bucket(Bucket=data_bucket)


def provider(issuer):
    iam = client("iam")
    suffix = ":oidc-provider/" + issuer.removeprefix("https://")
    arns = [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
    found = [arn for arn in arns if arn.endswith(suffix)]
    if not found:
        print(f"no OIDC provider for {issuer} (providers: {arns})", file=sys.stderr)
        return 1
    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=found[0])
    print(f"ARN:         {found[0]}")
    print(f"client IDs:  {', '.join(got.get('ClientIDList', []))}")
    print(f"thumbprints: {', '.join(got.get('ThumbprintList', [])) or '(none)'}")
    tags = {t["Key"]: t["Value"] for t in got.get("Tags", [])}
    if tags:
        print(f"tags:        {', '.join(f'{k}={v}' for k, v in sorted(tags.items()))}")
    return 0


def trust_policy(name):
    document = client("iam").get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    if isinstance(document, str):  # botocore decodes it when it can; else URL-encoded JSON
        document = json.loads(urllib.parse.unquote(document))
    print(json.dumps(document, indent=2))


COMMANDS = {"issuer-bucket": (issuer_bucket, 3), "role": (role, 2), "provider": (provider, 1), "trust-policy": (trust_policy, 1)}


def main(argv):
    command, arity = COMMANDS.get(argv[0] if argv else "", (None, 0))
    if command is None or len(argv) - 1 != arity:
        print(__doc__, file=sys.stderr)
        return 2
    return command(*argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
