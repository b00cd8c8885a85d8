"""What an application does with the credentials irsa set up, through boto3's default
credential chain and nothing else: `sts get-caller-identity`, then an S3 put and get of one
object. The twin of examples/aws_sdk_probe.rs (same arguments, same one-line JSON report);
the cluster tests run it as a pod's process with exactly the container's environment plus
the endpoint override (e2e/src/kubelet.rs).

Usage: sdk_probe.py BUCKET KEY
"""

import json
import sys

import boto3
import botocore.config
import botocore.exceptions


def main(bucket, key):
    stage = "sts:GetCallerIdentity"
    try:
        identity = boto3.client("sts").get_caller_identity()
        s3 = boto3.client("s3", config=botocore.config.Config(s3={"addressing_style": "path"}))
        stage = "s3:PutObject"
        s3.put_object(Bucket=bucket, Key=key, Body=f"written by sdk_probe.py as {identity['Arn']}")
        stage = "s3:GetObject"
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except botocore.exceptions.ClientError as e:
        error = e.response.get("Error", {})
        print(json.dumps({"stage": stage, "code": error.get("Code"), "error": str(e)}))
        return 1
    except Exception as e:  # noqa: BLE001 - whatever the SDK raised is the application's error
        print(json.dumps({"stage": stage, "code": None, "error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps({"arn": identity["Arn"], "account": identity["Account"], "object": body}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
