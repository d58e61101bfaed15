"""Wait for a freshly started S3 server of a rig (SeaweedFS, radosgw) to be usable.

    s3ready.py PORT ACCESS SECRET BUCKET bucket     create BUCKET (retried)
    s3ready.py PORT ACCESS SECRET BUCKET readable   an object of BUCKET reads back

A server answers on its port before it serves requests (SeaweedFS's filer, radosgw's
pools), so both retry for up to 30 s. Runs under the system python3 (boto3 from apt).
"""
import sys
import time

import boto3
from botocore.config import Config


def main(port, access, secret, bucket, what):
    c = boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % port,
                     aws_access_key_id=access, aws_secret_access_key=secret,
                     region_name="us-east-1",
                     config=Config(s3={"addressing_style": "path"},
                                   retries={"max_attempts": 1}))
    deadline = time.time() + 30
    while True:
        try:
            if what == "bucket":
                try:
                    c.create_bucket(Bucket=bucket)
                except c.exceptions.BucketAlreadyOwnedByYou:
                    pass
            else:
                for k in c.list_objects_v2(Bucket=bucket, MaxKeys=1).get("Contents") or ():
                    c.get_object(Bucket=bucket, Key=k["Key"])["Body"].read()
            return 0
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
